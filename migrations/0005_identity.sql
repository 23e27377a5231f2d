-- Identity: how people log in (passwords, the device flow, refresh tokens), the keys the
-- gateway signs its tokens with, and an audit trail of administrative actions.

-- The issuer's subject a user logs in as (`sub`): the embedded issuer's is the user's id;
-- an external issuer's is whatever it says, unique per issuer.
ALTER TABLE users ADD COLUMN issuer TEXT;
ALTER TABLE users ADD COLUMN subject TEXT;
CREATE UNIQUE INDEX users_subject ON users(issuer, subject) WHERE subject IS NOT NULL;
ALTER TABLE users ADD COLUMN password_hash TEXT;  -- argon2id, PHC string


-- Signing keys (private JWKs). The newest unretired one signs; every one stays in the
-- JWKS so tokens it signed stay valid until they expire.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_jwk TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

-- RFC 8628 device authorizations. The device code is stored hashed; a code is used once.
CREATE TABLE device_codes (
    device_hash  BLOB PRIMARY KEY,
    user_code    TEXT NOT NULL UNIQUE,
    client_id    TEXT NOT NULL,
    scope        TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'denied', 'used')),
    user_id      TEXT REFERENCES users(id),
    interval     INTEGER NOT NULL,
    last_poll_at INTEGER,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX device_codes_expiry ON device_codes(expires_at);

-- Refresh tokens, hashed, rotated on use. A token used twice revokes its whole family
-- (a stolen copy and the real one cannot both go on).
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family     TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL DEFAULT '',
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'used', 'revoked')),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    detail     TEXT,
    address    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX audit_log_time ON audit_log(created_at);
