"""The only package that touches SQLite: schema, migrations, the writer, queries."""

from .accounts import AccountError, KeyRecord
from .db import StoreError, connect, migrate
from .service import Store
from .usage import UsageRecord

__all__ = [
    "AccountError",
    "KeyRecord",
    "Store",
    "StoreError",
    "UsageRecord",
    "connect",
    "migrate",
]
