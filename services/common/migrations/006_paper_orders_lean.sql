-- Two writes per paper order that guarded nothing:
-- * the foreign key to paper_markets: both placing statements already insert only when the
--   market row exists at the version the order was priced on, and markets are never deleted.
--   The key check also took a KEY SHARE lock on the market row per order (a WAL record each, and
--   a multixact when concurrent accounts trade the same market);
-- * the (account, id) index: only the paper account's order listing used it, and
--   paper_orders_client_idx (account, ...) serves that listing as well.
ALTER TABLE paper_orders DROP CONSTRAINT IF EXISTS paper_orders_symbol_fkey;
DROP INDEX IF EXISTS paper_orders_account_idx;
