-- A connection the exchange names as the account of another connection (another API key of it,
-- found by the pricer: services/common/exchanges/accounts.py) is a second connection to one
-- account, made before migration 014 or without the connection check. Live runs on it are refused
-- until one of the two is deleted: two connections' live portfolios would undo each other's trades,
-- and the scheduler's one-live-run rule, keyed on the connection, would let them trade at once.
-- Deleting the other connection frees it (ON DELETE SET NULL). Dry runs go on.
ALTER TABLE exchange_connections
    ADD COLUMN same_account_as uuid REFERENCES exchange_connections (id) ON DELETE SET NULL;

-- The foreign key's ON DELETE looks connections up by it.
CREATE INDEX exchange_connections_same_account_as ON exchange_connections (same_account_as)
    WHERE same_account_as IS NOT NULL;

GRANT SELECT (same_account_as) ON exchange_connections TO rebalancer_api;
