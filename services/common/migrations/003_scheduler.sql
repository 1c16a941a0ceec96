-- Scheduler state: the claim's details on the portfolio row, the scheduler's shared control
-- state (read by the API for GET /api/scheduler), and one heartbeat row per replica.
-- Written only by services/scheduler (the trigger below acts on the scheduler's column).

-- What a claimed run needs when the scheduler itself must end it (lease expiry).
ALTER TABLE portfolios
    ADD COLUMN active_run_started_at timestamptz,
    ADD COLUMN active_run_trigger    text,
    ADD COLUMN active_run_dry_run    boolean;

-- A schedule edit (interval, cron, time zone) makes the old next_rebalance_at meaningless: the
-- row is marked for rescheduling (NULL) and the next check computes its next due time from the
-- new schedule. This keeps next_rebalance_at written by scheduler rules only, whoever edits.
CREATE FUNCTION portfolios_schedule_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.next_rebalance_at := NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER portfolios_schedule_changed
    BEFORE UPDATE OF rebalance_interval, cron, timezone ON portfolios
    FOR EACH ROW
    WHEN (OLD.rebalance_interval IS DISTINCT FROM NEW.rebalance_interval
          OR OLD.cron IS DISTINCT FROM NEW.cron
          OR OLD.timezone IS DISTINCT FROM NEW.timezone)
    EXECUTE FUNCTION portfolios_schedule_changed();

-- Rows waiting for a next due time: few at any moment, found without a table scan.
CREATE INDEX portfolios_unscheduled_idx ON portfolios (id)
    WHERE next_rebalance_at IS NULL AND rebalance_enabled AND active_run_id IS NULL;

-- One row: the control state every replica follows (start/stop, check interval, dry-run mode).
CREATE TABLE scheduler_state (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    is_running      boolean NOT NULL DEFAULT false,
    check_interval  text NOT NULL DEFAULT '0 * * * *',
    dry_run_mode    boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL DEFAULT '',      -- which replica or command changed it last
    last_check_at   timestamptz,                   -- scheduler time of the last check
    last_check_ms   integer,
    last_check_due  integer
);

-- Replicas alive: a row per process, heartbeat refreshed while it runs.
CREATE TABLE scheduler_replicas (
    replica_id    text PRIMARY KEY,
    host          text NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    enabled       boolean NOT NULL DEFAULT true
);
