-- 0007_usage_daily.sql spelled for PostgreSQL: the same three rollup tables and their
-- backfill; no trigger. On PostgreSQL the settlement writes the rollups itself
-- (`proxy/store/rollups.py`, in the same transaction as the usage rows).

CREATE TABLE usage_daily (
    day        TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    user_id    TEXT,
    model      TEXT NOT NULL,
    provider   TEXT NOT NULL,
    tier       TEXT NOT NULL,
    ok         BIGINT NOT NULL,
    requests   BIGINT NOT NULL,
    tokens_in  BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    cost       BIGINT NOT NULL,
    PRIMARY KEY (day, key_id, model, provider, tier, ok)
);
CREATE INDEX usage_daily_key ON usage_daily(key_id, day);
CREATE INDEX usage_daily_user ON usage_daily(user_id, day);

CREATE TABLE usage_days (
    day        TEXT NOT NULL,
    ok         BIGINT NOT NULL,
    requests   BIGINT NOT NULL,
    tokens_in  BIGINT NOT NULL,
    tokens_out BIGINT NOT NULL,
    cost       BIGINT NOT NULL,
    PRIMARY KEY (day, ok)
);
CREATE TABLE usage_key_days (
    day      TEXT NOT NULL,
    key_id   TEXT NOT NULL,
    user_id  TEXT,
    requests BIGINT NOT NULL,
    cost     BIGINT NOT NULL,
    PRIMARY KEY (day, key_id)
);

INSERT INTO usage_daily
    SELECT to_char(to_timestamp(created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
           coalesce(key_id, ''), max(user_id), coalesce(served_model, ''),
           coalesce(provider, ''), coalesce(tier, ''),
           CASE WHEN status = 200 THEN 1 ELSE 0 END, count(*), sum(tokens_in),
           sum(tokens_out), sum(cost)
    FROM usage GROUP BY 1, 2, 4, 5, 6, 7;
INSERT INTO usage_days
    SELECT day, ok, sum(requests), sum(tokens_in), sum(tokens_out), sum(cost)
    FROM usage_daily GROUP BY day, ok;
INSERT INTO usage_key_days
    SELECT day, key_id, max(user_id), sum(requests), sum(cost)
    FROM usage_daily GROUP BY day, key_id;

CREATE INDEX ledger_kind_time ON ledger(kind, created_at);
