-- Money leases: the share of a key's balance each gateway process may spend on its own.
--
-- Several processes (workers on one machine, gateways on several) spend the same keys. Each
-- takes a lease from a key's free balance (balance - leased) with a conditional update,
-- spends it without asking the database per request, and gives back what it does not use;
-- the leases of a process that stopped heartbeating are reclaimed. SCALING.md has the design.

-- What every process together has taken out of the balance: never more than the balance.
ALTER TABLE api_keys ADD COLUMN leased INTEGER NOT NULL DEFAULT 0
    CHECK (leased >= 0 AND leased <= balance);

-- The gateway processes alive: a row per process, its heartbeat in ms since the epoch.
CREATE TABLE owners (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE INDEX owners_heartbeat ON owners(heartbeat_at);

-- Each process's lease on a key; a key's `leased` is the sum of its rows here.
CREATE TABLE leases (
    key_id     TEXT NOT NULL REFERENCES api_keys(id),
    owner      TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, owner)
);
CREATE INDEX leases_owner ON leases(owner);

-- The process whose request a hold belongs to: only a dead process's holds are released.
ALTER TABLE holds ADD COLUMN owner TEXT;
