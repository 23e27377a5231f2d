-- OAuth clients that registered themselves (RFC 7591: MCP clients such as Claude Code) and
-- the authorization codes they exchange, with PKCE, for tokens. Public clients only: no
-- client secrets. A code is stored hashed and used once.
CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY,
    client_name   TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,  -- a JSON array of exact URIs
    created_at    INTEGER NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash      BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oauth_clients(client_id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,  -- S256 of the client's code_verifier
    scope          TEXT NOT NULL DEFAULT '',
    used_at        INTEGER,
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX authorization_codes_expiry ON authorization_codes(expires_at);
