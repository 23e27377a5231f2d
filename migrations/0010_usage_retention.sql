-- Usage retention: raw usage rows older than `[retention] usage_days` are deleted (the daily
-- rollups of 0007 keep their totals); the ledger is never deleted.

-- A usage debit keeps naming its usage row by id, but as a plain number: the row it names
-- may have been deleted by retention, and the debit must stay. The unique index still lets
-- a usage row be debited at most once (usage ids are never reused: retention never deletes
-- the newest usage row). SQLite drops a foreign key only by rebuilding the table.
CREATE TABLE ledger_new (
    id         INTEGER PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys(id),
    kind       TEXT NOT NULL CHECK (kind IN
               ('grant', 'topup', 'usage', 'transfer', 'refund', 'dispute', 'adjustment')),
    amount     INTEGER NOT NULL,
    reference  TEXT,
    actor      TEXT,
    note       TEXT,
    created_at INTEGER NOT NULL,
    usage_id   INTEGER  -- the usage row debited (it may be gone: see usage_retention)
);
INSERT INTO ledger_new (id, key_id, kind, amount, reference, actor, note, created_at, usage_id)
    SELECT id, key_id, kind, amount, reference, actor, note, created_at, usage_id FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
CREATE INDEX ledger_key ON ledger(key_id, id);
CREATE UNIQUE INDEX ledger_usage ON ledger(usage_id) WHERE usage_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_topup ON ledger(reference) WHERE kind = 'topup';
CREATE UNIQUE INDEX ledger_clawback ON ledger(reference) WHERE kind IN ('refund', 'dispute');
CREATE INDEX ledger_kind_time ON ledger(kind, created_at);

-- How far retention has gone: usage rows created before `horizon_ms` (a UTC midnight) may
-- have been deleted, so the books check reads the rollups and the ledger for those days.
CREATE TABLE usage_retention (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    horizon_ms  INTEGER NOT NULL,
    pruned_rows INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
