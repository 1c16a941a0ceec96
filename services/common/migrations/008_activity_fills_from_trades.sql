-- A filled order's activity entry ("Order executed successfully: buy 0.5 BTC at 27500 USD") said
-- nothing its trade row does not: the ledger wrote both, the same facts twice (at 20 assets, 20 of
-- a run's 24 activity rows and 80 of its index entries). From now on the ledger writes only the
-- trade, and the activity feed reads fills from `trades`.
--
-- `activity_feed` is that feed: the activity log's own entries (a run's stages, failed and
-- rejected orders, the scheduler's refusals) and one entry per trade. Its ids stay unique: trades
-- and activity entries now draw them from one sequence, and the fills logged before this
-- migration (ids up to the mark below) are shown as they were logged, not again from their trades.
-- Entries are read with the reader's rights (security_invoker), so row-level security applies to
-- the api as on the tables themselves.
DO $$
DECLARE
    mark bigint := GREATEST(
        (SELECT last_value FROM activity_log_id_seq),
        (SELECT last_value FROM trades_id_seq),
        (SELECT COALESCE(max(id), 0) FROM activity_log),
        (SELECT COALESCE(max(id), 0) FROM trades)
    );
BEGIN
    PERFORM setval('activity_log_id_seq', mark, true);
    ALTER TABLE trades ALTER COLUMN id SET DEFAULT nextval('activity_log_id_seq');
    EXECUTE format($view$
        CREATE VIEW activity_feed WITH (security_invoker = true) AS
        SELECT a.id, a.user_id, a.portfolio_id, a.run_id, a.event_type, a.description, a.details, a.created_at
        FROM activity_log a
        -- a fill logged by a ledger of the previous version still running during an upgrade:
        -- its trade (id above the mark) is already in the feed
        WHERE NOT (a.event_type = 'order_filled' AND a.id > %1$s)
        UNION ALL
        SELECT t.id, t.user_id, t.portfolio_id, t.run_id, 'order_filled',
               format('Order executed successfully: %%s %%s %%s at %%s %%s%%s', t.side, t.quantity, t.asset,
                      t.price, t.quote, CASE WHEN t.dry_run THEN ' (simulated)' ELSE '' END),
               '{}'::jsonb, t.executed_at
        FROM trades t
        WHERE t.id > %1$s
    $view$, mark);
END
$$;

GRANT SELECT ON activity_feed TO rebalancer_api;
