"""What every operator command shares: settings, the database, one-line errors."""

from __future__ import annotations

import argparse
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

from proxy.config import Settings, load_settings
from proxy.errors import ConfigError
from proxy.store import StoreError, connect, migrate


class UserFacingError(Exception):
    """Reported as one line, exit code 1."""


def load(args: argparse.Namespace, **overrides: Any) -> Settings:
    try:
        return load_settings(os.environ, args.config, {"db_path": args.db, **overrides})
    except ConfigError as exc:
        raise UserFacingError(str(exc)) from exc


def open_database(settings: Settings) -> sqlite3.Connection:
    """Connect and bring the schema up to date; problems become one line for the user."""
    try:
        conn = connect(settings.db_path)
        migrate(conn)
    except StoreError as exc:
        raise UserFacingError(str(exc)) from exc
    return conn


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")
