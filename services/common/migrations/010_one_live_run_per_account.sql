-- An exchange account has one live run at a time. A portfolio values and rebalances its whole
-- account, so a live run valued while another live run trades the same account plans against
-- half-traded balances and trades part of the same drift again. The API keeps one live portfolio
-- per account, but dry runs share accounts and can be triggered live by hand, and accounts that
-- had two live portfolios before that rule keep them. The scheduler's claims skip an account with
-- a live run (services/scheduler/repository.py); this index makes two replicas claiming for one
-- account at once a unique violation for the later one instead of two live runs.
DO $$
DECLARE
    busy uuid;
BEGIN
    SELECT connection_id INTO busy FROM portfolios
    WHERE active_run_id IS NOT NULL AND NOT active_run_dry_run
    GROUP BY connection_id HAVING count(*) > 1 LIMIT 1;
    IF busy IS NOT NULL THEN
        RAISE EXCEPTION 'exchange connection % has two live runs active at once; apply this migration again once they complete or their leases expire', busy;
    END IF;
END $$;

CREATE UNIQUE INDEX portfolios_one_live_run_per_connection ON portfolios (connection_id)
    WHERE active_run_id IS NOT NULL AND NOT active_run_dry_run;
