-- API roles, grants and row-level security.
--
-- Two roles, both NOLOGIN (the process logs in as the DATABASE_URL user and switches):
--   rebalancer_api      the REST API: every request runs `SET LOCAL ROLE rebalancer_api` and
--                       `set_config('app.user_id', <user>, true)` in its transaction, and sees and
--                       changes only that user's rows.
--   rebalancer_service  internal services (scheduler, pricer, planner, executor, ledger): every row.
--
-- Policies are attached to roles, not to a setting: the api policy applies to rebalancer_api only,
-- and the service policy to members of rebalancer_service (the migrating owner is made one, so
-- the services that connect as the owner keep working although RLS is FORCEd on the owner too).
-- Forgetting to set app.user_id as rebalancer_api therefore shows nothing (NULL never matches);
-- it never widens access. Roles are cluster-wide: creation tolerates a concurrent creator.

DO $$
BEGIN
    BEGIN
        CREATE ROLE rebalancer_api NOLOGIN NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE rebalancer_service NOLOGIN BYPASSRLS;
    EXCEPTION
        WHEN duplicate_object OR unique_violation THEN NULL;
        -- BYPASSRLS needs a superuser; the service policies below do not depend on it.
        WHEN insufficient_privilege THEN
            BEGIN
                CREATE ROLE rebalancer_service NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
    END;
END
$$;

-- The owner (the DATABASE_URL user) may switch to the api role and acts with the service role's
-- rights. A superuser owner needs neither, but the grants are harmless there.
DO $$
BEGIN
    EXECUTE format('GRANT rebalancer_api TO %I', current_user);
    EXECUTE format('GRANT rebalancer_service TO %I', current_user);
EXCEPTION WHEN duplicate_object OR invalid_grant_operation THEN NULL;
END
$$;

-- The user the current transaction acts for (NULL when unset: after a commit the setting reads '').
CREATE OR REPLACE FUNCTION app_current_user_id() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

-- ---------------------------------------------------------------- grants to the api role
GRANT USAGE ON SCHEMA public TO rebalancer_api, rebalancer_service;
GRANT EXECUTE ON FUNCTION app_current_user_id() TO rebalancer_api;

GRANT SELECT, UPDATE (name, email, updated_at), DELETE ON users TO rebalancer_api;
GRANT INSERT (id, email, name) ON users TO rebalancer_api;

-- token_hash is insertable but never readable through the api role.
GRANT SELECT (id, user_id, label, scopes, created_at, last_used_at, revoked_at) ON api_tokens TO rebalancer_api;
GRANT INSERT (user_id, token_hash, label, scopes) ON api_tokens TO rebalancer_api;
GRANT UPDATE (revoked_at) ON api_tokens TO rebalancer_api;

-- Credentials are write-only: the api role cannot read credentials_enc back.
GRANT SELECT (id, user_id, exchange_id, label, key_version, api_key_hint, api_url, sandbox,
              paper_account, created_at, updated_at) ON exchange_connections TO rebalancer_api;
GRANT INSERT (user_id, exchange_id, label, credentials_enc, key_version, api_key_hint, api_url,
              sandbox, paper_account) ON exchange_connections TO rebalancer_api;
GRANT UPDATE (label, updated_at) ON exchange_connections TO rebalancer_api;
GRANT DELETE ON exchange_connections TO rebalancer_api;

-- Schedule state (next/last_rebalanced_at, active_run_*, lease_expires_at) is the scheduler's: the
-- api inserts next_rebalance_at as NULL ("to be scheduled") and never updates it (a schedule edit
-- resets it through migration 003's trigger).
GRANT SELECT, DELETE ON portfolios TO rebalancer_api;
GRANT INSERT (user_id, connection_id, name, target_weights, quote_currency, rebalance_enabled,
              rebalance_interval, cron, timezone, rebalance_threshold, threshold_kind, rebalance_mode,
              always_rebalance, max_orders_per_rebalance, dry_run, leave_alone, cash_reserve,
              order_type, limit_timeout_seconds, next_rebalance_at) ON portfolios TO rebalancer_api;
GRANT UPDATE (connection_id, name, target_weights, quote_currency, rebalance_enabled,
              rebalance_interval, cron, timezone, rebalance_threshold, threshold_kind, rebalance_mode,
              always_rebalance, max_orders_per_rebalance, dry_run, leave_alone, cash_reserve,
              order_type, limit_timeout_seconds, updated_at)
    ON portfolios TO rebalancer_api;

-- History is the ledger's: read-only for the api.
GRANT SELECT ON rebalance_runs, orders, trades, portfolio_snapshots, activity_log TO rebalancer_api;

-- Scheduler state (migration 003, when present) is global, not user-owned: readable.
DO $$
BEGIN
    IF to_regclass('scheduler_state') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT ON scheduler_state TO rebalancer_api';
    END IF;
END
$$;

-- ---------------------------------------------------------------- grants to the service role
-- Services may run as rebalancer_service (SET ROLE) instead of as the owner: same rights on the
-- tables that exist now and on those later migrations create.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rebalancer_service;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO rebalancer_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO rebalancer_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO rebalancer_service;

-- ---------------------------------------------------------------- row-level security
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'api_tokens', 'exchange_connections', 'portfolios',
                             'rebalance_runs', 'orders', 'trades', 'portfolio_snapshots',
                             'activity_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS service_all ON %I', t);
        EXECUTE format('CREATE POLICY service_all ON %I FOR ALL TO rebalancer_service'
                       ' USING (true) WITH CHECK (true)', t);
        EXECUTE format('DROP POLICY IF EXISTS api_own_rows ON %I', t);
        IF t = 'users' THEN
            EXECUTE 'CREATE POLICY api_own_rows ON users FOR ALL TO rebalancer_api'
                    ' USING (id = app_current_user_id()) WITH CHECK (id = app_current_user_id())';
        ELSE
            EXECUTE format('CREATE POLICY api_own_rows ON %I FOR ALL TO rebalancer_api'
                           ' USING (user_id = app_current_user_id())'
                           ' WITH CHECK (user_id = app_current_user_id())', t);
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------- token lookup
-- Runs before the user is known, so it runs with the owner's rights (SECURITY DEFINER): the api
-- role gets one answer for one hash and no read access to the tokens table. The admin scope
-- counts only for admin users. last_used_at is refreshed at most once a minute.
CREATE OR REPLACE FUNCTION auth_token(p_token_hash text)
    RETURNS TABLE (user_id uuid, scopes text[], is_admin boolean)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
DECLARE
    found_token_id uuid;
BEGIN
    SELECT t.id, t.user_id,
           CASE WHEN u.is_admin THEN t.scopes ELSE array_remove(t.scopes, 'admin') END,
           u.is_admin
      INTO found_token_id, user_id, scopes, is_admin
      FROM api_tokens t JOIN users u ON u.id = t.user_id
     WHERE t.token_hash = p_token_hash AND t.revoked_at IS NULL;
    IF found_token_id IS NULL THEN
        RETURN;
    END IF;
    UPDATE api_tokens SET last_used_at = now()
     WHERE id = found_token_id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION auth_token(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_token(text) TO rebalancer_api;

-- Sign-up checks that the email is free before the new user exists (its row is otherwise
-- invisible to the api role); the insert itself goes through RLS as the new user.
CREATE OR REPLACE FUNCTION email_taken(p_email text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM users WHERE lower(email) = lower(p_email)) $$;
REVOKE ALL ON FUNCTION email_taken(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION email_taken(text) TO rebalancer_api;

-- Case-insensitive lookups for sign-up and the admin CLI.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_lower_idx ON users (lower(email));
