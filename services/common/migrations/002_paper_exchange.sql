-- The paper exchange: simulated markets, balances and orders, shared by every process.
-- Written only by services/common/exchanges/paper*.py. Money and quantities are NUMERIC.

CREATE TABLE paper_markets (
    symbol       text PRIMARY KEY,               -- unified "BASE/QUOTE"
    base         text NOT NULL,
    quote        text NOT NULL,
    price        numeric NOT NULL CHECK (price > 0),  -- last price, quote per base
    min_amount   numeric,
    min_cost     numeric,
    amount_step  numeric CHECK (amount_step > 0),
    price_step   numeric CHECK (price_step > 0),
    maker_fee    numeric NOT NULL DEFAULT 0.0016,
    taker_fee    numeric NOT NULL DEFAULT 0.0026,
    active       boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (base <> quote)
);

CREATE TABLE paper_balances (
    account     text NOT NULL,
    asset       text NOT NULL,
    free        numeric NOT NULL DEFAULT 0 CHECK (free >= 0),  -- the last guard against overdraft
    used        numeric NOT NULL DEFAULT 0 CHECK (used >= 0),  -- locked by open limit orders
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, asset)
);

CREATE TABLE paper_orders (
    id               bigserial PRIMARY KEY,      -- the exchange order id (as text on the port)
    account          text NOT NULL,
    client_order_id  text NOT NULL,
    symbol           text NOT NULL REFERENCES paper_markets(symbol),
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    type             text NOT NULL CHECK (type IN ('market', 'limit')),
    amount           numeric NOT NULL CHECK (amount > 0),
    price            numeric,                    -- the limit price; NULL for market orders
    status           text NOT NULL CHECK (status IN ('open', 'closed', 'canceled')),
    filled           numeric NOT NULL DEFAULT 0,
    average_price    numeric,
    cost             numeric NOT NULL DEFAULT 0,
    fee              numeric NOT NULL DEFAULT 0,
    fee_currency     text,
    reserved_asset   text,                       -- what an open order holds as `used`
    reserved         numeric NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- Like Binance and Kraken, a client order id is unique only among OPEN orders: a filled market
-- order's id can be used again, and the second order really executes.
CREATE UNIQUE INDEX paper_orders_open_client_uidx ON paper_orders (account, client_order_id)
    WHERE status = 'open';
-- fetch_order_by_client_id: the newest order with that id.
CREATE INDEX paper_orders_client_idx ON paper_orders (account, client_order_id, id DESC);
CREATE INDEX paper_orders_account_idx ON paper_orders (account, id);
-- Matching after a price move reads only the open orders of the moved markets.
CREATE INDEX paper_orders_open_symbol_idx ON paper_orders (symbol, side, price) WHERE status = 'open';
