-- Runs whose lease expired: the scheduler failed them and released their portfolios, so a plan of
-- one that is delivered again (it was being retried through an exchange outage longer than the
-- lease) must place no more orders, even while no newer run holds the portfolio yet: a newer run,
-- valued while the old one traded, would trade the same drift a second time.
-- Written by services/scheduler (with the release, in one transaction); read by the executor.
CREATE TABLE expired_runs (
    run_id        uuid PRIMARY KEY,
    portfolio_id  uuid NOT NULL,
    expired_at    timestamptz NOT NULL DEFAULT now()
);
