-- Core schema: configuration (api), schedule state (scheduler), history (ledger), and the
-- delivery machinery every service shares (inbox, outbox, dead letters).
-- Money and quantities are NUMERIC: never floats for balances, prices or fees.


-- ---------------------------------------------------------------- configuration (api)
CREATE TABLE users (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email       text NOT NULL UNIQUE,
    name        text NOT NULL DEFAULT '',
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   text NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    label        text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL DEFAULT '{user}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE exchange_connections (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    exchange_id     text NOT NULL,              -- a ccxt exchange id, or 'paper'
    label           text NOT NULL DEFAULT '',
    -- Credentials, encrypted (see services/common/secrets.py); NULL for the paper exchange.
    credentials_enc bytea,
    key_version     text,                       -- which encryption key sealed them (rotation)
    api_key_hint    text NOT NULL DEFAULT '',   -- masked, for display: "ab12…f9"
    api_url         text,                       -- custom base URL (testnets, fakes)
    sandbox         boolean NOT NULL DEFAULT false,
    paper_account   text,                       -- the paper exchange account this connection trades
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX exchange_connections_user_idx ON exchange_connections (user_id);

CREATE TABLE portfolios (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    connection_id           uuid NOT NULL REFERENCES exchange_connections(id) ON DELETE RESTRICT,
    name                    text NOT NULL,
    target_weights          jsonb NOT NULL,     -- {"BTC": "40", "ETH": "30", ...} percent, sum 100
    quote_currency          text NOT NULL DEFAULT 'USD',
    rebalance_enabled       boolean NOT NULL DEFAULT false,
    rebalance_interval      text NOT NULL DEFAULT 'weekly',  -- hourly|daily|weekly|monthly|cron|threshold
    cron                    text,
    timezone                text NOT NULL DEFAULT 'UTC',
    rebalance_threshold     numeric NOT NULL DEFAULT 10,
    threshold_kind          text NOT NULL DEFAULT 'absolute', -- absolute|relative|value
    rebalance_mode          text NOT NULL DEFAULT 'target',   -- target|band
    always_rebalance        boolean NOT NULL DEFAULT false,
    max_orders_per_rebalance integer,
    dry_run                 boolean NOT NULL DEFAULT false,
    leave_alone             text[] NOT NULL DEFAULT '{}',
    cash_reserve            numeric NOT NULL DEFAULT 0,
    order_type              text NOT NULL DEFAULT 'market',
    limit_timeout_seconds   integer NOT NULL DEFAULT 60,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- Schedule state: written by the scheduler only.
    last_rebalanced_at      timestamptz,
    next_rebalance_at       timestamptz DEFAULT now(),
    active_run_id           uuid,
    lease_expires_at        timestamptz
);
CREATE INDEX portfolios_user_idx ON portfolios (user_id);
-- The due query reads only enabled, unclaimed rows in next_rebalance_at order: index-only.
CREATE INDEX portfolios_due_idx ON portfolios (next_rebalance_at) INCLUDE (id)
    WHERE rebalance_enabled AND active_run_id IS NULL;
CREATE INDEX portfolios_lease_idx ON portfolios (lease_expires_at) WHERE active_run_id IS NOT NULL;

-- ---------------------------------------------------------------- history (ledger)
CREATE TABLE rebalance_runs (
    id                  uuid PRIMARY KEY,          -- the run id (correlation id on the bus)
    portfolio_id        uuid NOT NULL,             -- no FK: history outlives a deleted portfolio
    user_id             uuid NOT NULL,
    portfolio_name      text NOT NULL DEFAULT '',
    status              text NOT NULL DEFAULT 'running', -- running|succeeded|partial|failed|skipped
    success             boolean,
    dry_run             boolean NOT NULL DEFAULT false,
    triggered_by        text NOT NULL DEFAULT 'scheduler',
    started_at          timestamptz NOT NULL,
    executed_at         timestamptz NOT NULL DEFAULT now(),  -- the seed's executedAt: when it ended
    duration_ms         integer,
    portfolio_value     numeric NOT NULL DEFAULT 0,
    value_after         numeric,
    quote_currency      text NOT NULL DEFAULT 'USD',
    exchange_id         text NOT NULL DEFAULT '',
    orders_planned      integer NOT NULL DEFAULT 0,
    orders_executed     integer NOT NULL DEFAULT 0,
    orders_failed       integer NOT NULL DEFAULT 0,
    total_value_traded  numeric NOT NULL DEFAULT 0,
    fees                numeric NOT NULL DEFAULT 0,
    decision            text,                      -- rebalance|skip
    reason              text NOT NULL DEFAULT '',
    drift               jsonb NOT NULL DEFAULT '[]',
    left_out            jsonb NOT NULL DEFAULT '[]',
    orders              jsonb NOT NULL DEFAULT '[]',  -- the planned orders
    errors              jsonb NOT NULL DEFAULT '[]',
    strategy            jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX rebalance_runs_portfolio_idx ON rebalance_runs (portfolio_id, executed_at DESC);
CREATE INDEX rebalance_runs_user_idx ON rebalance_runs (user_id, executed_at DESC);
CREATE INDEX rebalance_runs_executed_idx ON rebalance_runs (executed_at DESC);

CREATE TABLE orders (
    client_order_id     text PRIMARY KEY,
    run_id              uuid NOT NULL,
    portfolio_id        uuid NOT NULL,
    user_id             uuid NOT NULL,
    leg                 integer NOT NULL,
    exchange_id         text NOT NULL,
    symbol              text NOT NULL,
    side                text NOT NULL,
    order_type          text NOT NULL DEFAULT 'market',
    amount              numeric NOT NULL,
    status              text NOT NULL,             -- submitted|open|filled|partially_filled|rejected|failed|canceled
    filled              numeric NOT NULL DEFAULT 0,
    average_price       numeric,
    cost                numeric NOT NULL DEFAULT 0,
    fee                 numeric NOT NULL DEFAULT 0,
    fee_currency        text,
    exchange_order_id   text,
    dry_run             boolean NOT NULL DEFAULT false,
    error               jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, leg)
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_portfolio_idx ON orders (portfolio_id, created_at DESC);

CREATE TABLE trades (
    id                  bigserial PRIMARY KEY,
    client_order_id     text NOT NULL UNIQUE,      -- one trade row per filled order
    run_id              uuid NOT NULL,
    portfolio_id        uuid NOT NULL,
    user_id             uuid NOT NULL,
    exchange_id         text NOT NULL,
    symbol              text NOT NULL,
    asset               text NOT NULL,             -- the base asset
    quote               text NOT NULL,
    side                text NOT NULL,
    quantity            numeric NOT NULL,
    price               numeric NOT NULL,
    value               numeric NOT NULL,          -- in the portfolio's quote currency
    fee                 numeric NOT NULL DEFAULT 0,
    fee_currency        text,
    exchange_order_id   text,
    dry_run             boolean NOT NULL DEFAULT false,
    executed_at         timestamptz NOT NULL
);
CREATE INDEX trades_user_idx ON trades (user_id, executed_at DESC);
CREATE INDEX trades_portfolio_idx ON trades (portfolio_id, executed_at DESC);

CREATE TABLE portfolio_snapshots (
    id              bigserial PRIMARY KEY,
    run_id          uuid NOT NULL,
    portfolio_id    uuid NOT NULL,
    user_id         uuid NOT NULL,
    kind            text NOT NULL,                 -- before|after
    holdings        jsonb NOT NULL,                -- {"BTC": "0.05", ...}
    prices          jsonb NOT NULL DEFAULT '{}',
    total_value     numeric NOT NULL,
    quote_currency  text NOT NULL DEFAULT 'USD',
    taken_at        timestamptz NOT NULL,
    UNIQUE (run_id, kind)
);
CREATE INDEX portfolio_snapshots_portfolio_idx ON portfolio_snapshots (portfolio_id, taken_at DESC);
CREATE INDEX portfolio_snapshots_user_idx ON portfolio_snapshots (user_id, taken_at DESC);

CREATE TABLE activity_log (
    id              bigserial PRIMARY KEY,
    message_id      text UNIQUE,                   -- the event that caused it: written once
    user_id         uuid,                          -- NULL for system events
    portfolio_id    uuid,
    run_id          uuid,
    event_type      text NOT NULL,
    description     text NOT NULL,
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_log_user_idx ON activity_log (user_id, created_at DESC);
CREATE INDEX activity_log_portfolio_idx ON activity_log (portfolio_id, created_at DESC);

-- ---------------------------------------------------------------- delivery machinery
-- Inbox: a consumer records each message id in the same transaction as its effect.
CREATE TABLE inbox (
    consumer      text NOT NULL,
    message_id    text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Outbox: events that must follow a database write, relayed with the publish ack checked.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    producer      text NOT NULL,
    subject       text NOT NULL,
    message_id    text NOT NULL UNIQUE,
    payload       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (producer, id) WHERE published_at IS NULL;

CREATE TABLE dead_letters (
    id            bigserial PRIMARY KEY,
    consumer      text NOT NULL,
    subject       text NOT NULL,
    message_id    text,
    reason        text NOT NULL,
    payload       bytea,
    deliveries    integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_created_idx ON dead_letters (created_at DESC);

-- ---------------------------------------------------------------- executor
-- Every order intent is stored before the exchange is called; the client order id is
-- deterministic per (run, leg), so a retry finds the intent and looks the order up instead of
-- sending it again.
CREATE TABLE order_intents (
    client_order_id    text PRIMARY KEY,
    run_id             uuid NOT NULL,
    leg                integer NOT NULL,
    portfolio_id       uuid NOT NULL,
    user_id            uuid NOT NULL,
    connection_id      uuid NOT NULL,
    symbol             text NOT NULL,
    side               text NOT NULL,
    amount             numeric NOT NULL,
    order_type         text NOT NULL DEFAULT 'market',
    limit_price        numeric,
    state              text NOT NULL DEFAULT 'intent', -- intent|sending|open|filled|rejected|failed|canceled
    exchange_order_id  text,
    result             jsonb,
    attempts           integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, leg)
);
CREATE INDEX order_intents_unresolved_idx ON order_intents (updated_at) WHERE state IN ('intent', 'sending', 'open');
