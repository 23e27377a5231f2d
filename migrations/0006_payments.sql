-- Payments: Stripe Checkout top-ups, credited exactly once, refunds and disputes debited back.

-- The ledger learns the kind `dispute`; SQLite changes a CHECK only by rebuilding the table.
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
    usage_id   INTEGER REFERENCES usage(id)
);
INSERT INTO ledger_new (id, key_id, kind, amount, reference, actor, note, created_at, usage_id)
    SELECT id, key_id, kind, amount, reference, actor, note, created_at, usage_id FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;
CREATE INDEX ledger_key ON ledger(key_id, id);
CREATE UNIQUE INDEX ledger_usage ON ledger(usage_id) WHERE usage_id IS NOT NULL;
-- A Checkout Session credits at most once; a refund or dispute event debits at most once.
CREATE UNIQUE INDEX ledger_topup ON ledger(reference) WHERE kind = 'topup';
CREATE UNIQUE INDEX ledger_clawback ON ledger(reference) WHERE kind IN ('refund', 'dispute');

-- One row per top-up, written before Stripe is asked for a session. Money in nano-USD.
CREATE TABLE payments (
    id             TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL REFERENCES api_keys(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    amount         INTEGER NOT NULL CHECK (amount > 0),   -- what the person pays
    credit         INTEGER NOT NULL CHECK (credit >= 0),  -- what the key gets (less the fee)
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'open', 'paid', 'failed', 'expired')),
    session_id     TEXT UNIQUE,
    payment_intent TEXT UNIQUE,
    checkout_url   TEXT,
    expires_at     INTEGER,
    credited_at    INTEGER,
    clawed_back    INTEGER NOT NULL DEFAULT 0,  -- refunded or disputed, debited back
    owed           INTEGER NOT NULL DEFAULT 0,  -- clawed back but not on the key any more
    created_at     INTEGER NOT NULL
);
CREATE INDEX payments_user ON payments(user_id, created_at);

-- Stripe events handled, so a redelivered event changes nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
