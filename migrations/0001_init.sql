-- Accounts, API keys, the money ledger and one usage row per request.
-- Money columns are integers of nano-USD (1 USD = 1e9); times are unix milliseconds.

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    email        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL DEFAULT '',
    is_admin     INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at   INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    balance    INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE ledger (
    id         INTEGER PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys(id),
    kind       TEXT NOT NULL
               CHECK (kind IN ('grant', 'topup', 'usage', 'transfer', 'refund', 'adjustment')),
    amount     INTEGER NOT NULL,
    reference  TEXT,
    actor      TEXT,
    note       TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX ledger_key ON ledger(key_id, id);

CREATE TABLE usage (
    id              INTEGER PRIMARY KEY,
    request_id      TEXT NOT NULL,
    key_id          TEXT REFERENCES api_keys(id),
    user_id         TEXT REFERENCES users(id),
    requested_model TEXT NOT NULL,
    served_model    TEXT,
    provider        TEXT,
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    cached_tokens   INTEGER NOT NULL DEFAULT 0,
    estimated       INTEGER NOT NULL DEFAULT 0 CHECK (estimated IN (0, 1)),
    cost            INTEGER NOT NULL DEFAULT 0,
    status          INTEGER NOT NULL,
    error           TEXT,
    latency_ms      INTEGER,
    ttft_ms         INTEGER,
    stream          INTEGER NOT NULL DEFAULT 0 CHECK (stream IN (0, 1)),
    created_at      INTEGER NOT NULL
);
CREATE INDEX usage_key_time ON usage(key_id, created_at);
CREATE INDEX usage_user_time ON usage(user_id, created_at);
CREATE INDEX usage_time ON usage(created_at);
CREATE INDEX usage_request ON usage(request_id);
