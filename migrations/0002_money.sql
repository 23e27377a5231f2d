-- Money and limits: per-key limits, reservations (holds), usage rows tied to their debit.

ALTER TABLE api_keys ADD COLUMN tier TEXT;
ALTER TABLE api_keys ADD COLUMN rps REAL CHECK (rps IS NULL OR rps > 0);
ALTER TABLE api_keys ADD COLUMN burst INTEGER CHECK (burst IS NULL OR burst >= 1);
ALTER TABLE api_keys ADD COLUMN max_streams INTEGER CHECK (max_streams IS NULL OR max_streams >= 0);

-- A hold is the most an in-flight request may cost. It lives while the request runs and
-- is deleted by the transaction that settles it; holds found at start-up belong to a
-- process that died and are released.
CREATE TABLE holds (
    id         TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys(id),
    request_id TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    created_at INTEGER NOT NULL
);
CREATE INDEX holds_key ON holds(key_id);

-- The usage debit points at its usage row: at most one debit per row.
ALTER TABLE ledger ADD COLUMN usage_id INTEGER REFERENCES usage(id);
CREATE UNIQUE INDEX ledger_usage ON ledger(usage_id) WHERE usage_id IS NOT NULL;

-- reserved: the hold the request ran under; unbilled: cost the balance could not cover.
ALTER TABLE usage ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN unbilled INTEGER NOT NULL DEFAULT 0;

-- Requests served before this migration were priced but never debited: what they would have
-- cost is what the balance did not pay (unbilled); what they were charged (cost) is nothing.
-- Without this, `tokenroute admin check` reports each of them as a cost with no debit.
UPDATE usage SET unbilled = cost, cost = 0 WHERE cost != 0;
