"""The only package that touches SQLite: schema, migrations, the writer, queries."""

from .accounts import AccountError, Duplicate, KeyRecord, Missing, UserRecord
from .db import StoreError, connect, migrate
from .usage import UsageRecord
from .writer import Store

__all__ = [
    "AccountError",
    "Duplicate",
    "KeyRecord",
    "Missing",
    "Store",
    "StoreError",
    "UsageRecord",
    "UserRecord",
    "connect",
    "migrate",
]
