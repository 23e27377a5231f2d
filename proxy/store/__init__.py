"""The only package that touches SQLite: schema, migrations, the writer, queries."""

from .accounts import AccountError, Duplicate, KeyRecord, Missing, UserRecord
from .db import Migration, StoreError, connect, migrate, pending_migrations
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
    "pending_migrations",
]
