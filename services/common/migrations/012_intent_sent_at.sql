-- When a leg's request was last sent (or was about to be), so that a leg of unknown outcome that a
-- look-up does not find is sent again only after the exchange has had time to list it: exchanges
-- can take a while to list a new order, and an order sent twice trades twice. NULL for legs
-- marked before this column existed (treated as sent long ago, as they were before).
ALTER TABLE order_intents ADD COLUMN sent_at timestamptz;
