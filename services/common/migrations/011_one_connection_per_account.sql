-- One connection per exchange account. An account has one live portfolio (the API) and one live
-- run at a time (migration 010), and both rules key on the connection: a second connection to the
-- same account would get around them, and two live portfolios would trade one account against
-- each other. account_ref names the account (services/common/exchanges/account_ref.py). The API
-- sets it on every connection it makes, and names older ones when it starts
-- (services/api/connection_refs.py): only it can open their API keys.
ALTER TABLE exchange_connections ADD COLUMN account_ref text;

CREATE UNIQUE INDEX exchange_connections_one_per_account ON exchange_connections (account_ref);

GRANT SELECT (account_ref), INSERT (account_ref) ON exchange_connections TO rebalancer_api;
