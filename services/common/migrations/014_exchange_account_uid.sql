-- An exchange account has one connection, also under several API keys. account_ref (migration 011)
-- knows a connection by its key, so a second key of the same account looked like another account,
-- and two live portfolios could trade one account through two connections. Where the exchange's
-- balance answer names the account itself (Binance's uid), the API's check of a new connection
-- records a digest of that name too (services/common/exchanges/account_ref.py), unique.
-- Connections made before, or without the check, have none.
ALTER TABLE exchange_connections ADD COLUMN account_uid_ref text;

CREATE UNIQUE INDEX exchange_connections_one_per_exchange_account ON exchange_connections (account_uid_ref);

GRANT SELECT (account_uid_ref), INSERT (account_uid_ref) ON exchange_connections TO rebalancer_api;
