-- Fallback routes: the upstreams a request tried before the one that served it.

ALTER TABLE usage ADD COLUMN fallbacks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage ADD COLUMN attempts TEXT;  -- JSON: [{"model", "status", "error"}, ...]
