-- Daily rollups of usage, kept by a trigger in the same transaction as each usage row, so
-- the operator's charts and totals read thousands of rows, not millions.

CREATE TABLE usage_daily (
    day        TEXT NOT NULL,     -- UTC, YYYY-MM-DD
    key_id     TEXT NOT NULL,     -- '' for a request without a key
    user_id    TEXT,
    model      TEXT NOT NULL,     -- the served model ('' when none served)
    provider   TEXT NOT NULL,
    tier       TEXT NOT NULL,
    ok         INTEGER NOT NULL,  -- status 200
    requests   INTEGER NOT NULL,
    tokens_in  INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost       INTEGER NOT NULL,
    PRIMARY KEY (day, key_id, model, provider, tier, ok)
) WITHOUT ROWID;
CREATE INDEX usage_daily_key ON usage_daily(key_id, day);
CREATE INDEX usage_daily_user ON usage_daily(user_id, day);

-- Coarser ones for the dashboard: a day in all, and a day per key.
CREATE TABLE usage_days (
    day        TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    requests   INTEGER NOT NULL,
    tokens_in  INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost       INTEGER NOT NULL,
    PRIMARY KEY (day, ok)
) WITHOUT ROWID;
CREATE TABLE usage_key_days (
    day      TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    user_id  TEXT,
    requests INTEGER NOT NULL,
    cost     INTEGER NOT NULL,
    PRIMARY KEY (day, key_id)
) WITHOUT ROWID;

INSERT INTO usage_daily
    SELECT date(created_at / 1000, 'unixepoch'), coalesce(key_id, ''), max(user_id),
           coalesce(served_model, ''), coalesce(provider, ''), coalesce(tier, ''),
           status = 200, count(*), sum(tokens_in), sum(tokens_out), sum(cost)
    FROM usage GROUP BY 1, 2, 4, 5, 6, 7;
INSERT INTO usage_days
    SELECT day, ok, sum(requests), sum(tokens_in), sum(tokens_out), sum(cost)
    FROM usage_daily GROUP BY day, ok;
INSERT INTO usage_key_days
    SELECT day, key_id, max(user_id), sum(requests), sum(cost)
    FROM usage_daily GROUP BY day, key_id;

CREATE TRIGGER usage_daily_add AFTER INSERT ON usage BEGIN
    INSERT INTO usage_daily (day, key_id, user_id, model, provider, tier, ok, requests,
                             tokens_in, tokens_out, cost)
    VALUES (date(NEW.created_at / 1000, 'unixepoch'), coalesce(NEW.key_id, ''), NEW.user_id,
            coalesce(NEW.served_model, ''), coalesce(NEW.provider, ''), coalesce(NEW.tier, ''),
            NEW.status = 200, 1, NEW.tokens_in, NEW.tokens_out, NEW.cost)
    ON CONFLICT (day, key_id, model, provider, tier, ok) DO UPDATE SET
        requests = requests + 1,
        tokens_in = tokens_in + excluded.tokens_in,
        tokens_out = tokens_out + excluded.tokens_out,
        cost = cost + excluded.cost;
    INSERT INTO usage_days (day, ok, requests, tokens_in, tokens_out, cost)
    VALUES (date(NEW.created_at / 1000, 'unixepoch'), NEW.status = 200, 1, NEW.tokens_in,
            NEW.tokens_out, NEW.cost)
    ON CONFLICT (day, ok) DO UPDATE SET
        requests = requests + 1,
        tokens_in = tokens_in + excluded.tokens_in,
        tokens_out = tokens_out + excluded.tokens_out,
        cost = cost + excluded.cost;
    INSERT INTO usage_key_days (day, key_id, user_id, requests, cost)
    VALUES (date(NEW.created_at / 1000, 'unixepoch'), coalesce(NEW.key_id, ''), NEW.user_id,
            1, NEW.cost)
    ON CONFLICT (day, key_id) DO UPDATE SET
        requests = requests + 1,
        cost = cost + excluded.cost;
END;

-- Money in and out over a time range, without reading every usage debit.
CREATE INDEX ledger_kind_time ON ledger(kind, created_at);
