-- The orders of unknown outcome on one of the caller's exchange connections: requests that may
-- have reached the exchange and that the executor's reconciler is still looking up with the
-- connection's key. The API refuses to delete a connection while it has any (without its key, a
-- resting order would never be canceled, nor a fill recorded). order_intents is the executor's
-- hot table and has no row-level security, so the api role gets this one answer, for a
-- connection it owns, and no read access to the table. The few unresolved legs are read through
-- order_intents_unresolved_idx: no index is added to the hot table.
CREATE OR REPLACE FUNCTION connection_unresolved_orders(p_connection_id uuid)
    RETURNS TABLE (client_order_id text, run_id uuid, symbol text, side text, state text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    SELECT i.client_order_id, i.run_id, i.symbol, i.side, i.state
    FROM order_intents i
    JOIN exchange_connections c ON c.id = i.connection_id
    WHERE i.connection_id = p_connection_id AND c.user_id = app_current_user_id()
      AND i.state IN ('sending', 'open')
    ORDER BY i.created_at, i.client_order_id
$$;
REVOKE ALL ON FUNCTION connection_unresolved_orders(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION connection_unresolved_orders(uuid) TO rebalancer_api;
