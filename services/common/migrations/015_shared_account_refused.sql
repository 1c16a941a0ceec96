-- A second connection to one exchange account, made before migrations 011/014 or without the
-- connection check, is marked as the first one's: by the pricer when the exchange names its account
-- as another connection's (another API key of it: services/common/exchanges/accounts.py), and by
-- the API's start for the same paper account or API key (services/api/connection_refs.py).
-- Live runs on it are refused
-- until one of the two is deleted: two connections' live portfolios would undo each other's trades,
-- and the scheduler's one-live-run rule, keyed on the connection, would let them trade at once.
-- Deleting the other connection frees it (ON DELETE SET NULL). Dry runs go on.
ALTER TABLE exchange_connections
    ADD COLUMN same_account_as uuid REFERENCES exchange_connections (id) ON DELETE SET NULL;

-- The foreign key's ON DELETE looks connections up by it.
CREATE INDEX exchange_connections_same_account_as ON exchange_connections (same_account_as)
    WHERE same_account_as IS NOT NULL;

GRANT SELECT (same_account_as) ON exchange_connections TO rebalancer_api;
