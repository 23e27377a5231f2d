"""The only package that touches the database (SQLite, or PostgreSQL through psycopg):
schema, migrations, the writer, queries."""

from .accounts import AccountError, Duplicate, KeyRecord, Missing, UserRecord
from .db import Migration, StoreError, connect
from .schema import migrate, open_database, pending_migrations, schema_version
from .usage import UsageRecord
from .writer import Store

__all__ = [
    "AccountError",
    "Duplicate",
    "KeyRecord",
    "Migration",
    "Missing",
    "Store",
    "StoreError",
    "UsageRecord",
    "UserRecord",
    "connect",
    "migrate",
    "open_database",
    "pending_migrations",
    "schema_version",
]
