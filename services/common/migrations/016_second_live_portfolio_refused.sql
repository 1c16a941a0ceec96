-- A portfolio rebalances its whole exchange account, so two live portfolios on one connection undo
-- each other's trades and pay the fees both ways. The API refuses a second one, but accounts that
-- had two before it keep them: the scheduler now fails the live runs of all but the oldest, and of
-- a dry-run portfolio triggered live beside a live one, with second_live_portfolio (who keeps the
-- account: services/common/live_portfolios.py). Its claim looks the connection's portfolios up by
-- this index; the foreign key's checks on deleting a connection use it too.
CREATE INDEX portfolios_connection_idx ON portfolios (connection_id, created_at, id);
