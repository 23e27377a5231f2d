"""A psycopg 3 connection that looks like the SQLite one the store's functions are written for.

The store's SQL uses `?` and `:name` placeholders, reads rows by index and by name, and
drives transactions with `BEGIN IMMEDIATE` / `SAVEPOINT` / `COMMIT`. `PgConnection` gives
the same surface over psycopg, so one function runs on either engine:

- placeholders become PostgreSQL's own `$1, $2, ...` (a `:name` used twice is one
  `$n`), sent through psycopg's `RawCursor`, which does not parse the query again: a
  settlement's multi-row INSERT has thousands of them. The translation is done once per
  statement text (cached, for statements of ordinary length); a `%` needs no escaping;
- SQLite's case-insensitive `LIKE` becomes `ILIKE`, `instr(` becomes `strpos(`;
- `BEGIN IMMEDIATE` (SQLite's "one writer at a time") becomes a REPEATABLE READ
  transaction: a job that reads then writes a row another gateway changed meanwhile
  fails with a serialization error, and the writer runs the batch again;
- rows answer `row[0]`, `row["name"]`, `dict(row)` and `tuple(row)`, like `sqlite3.Row`;
- `sum()` of integers (PostgreSQL's `numeric`) comes back as `int`, and a Python `bool`
  goes in as the 0/1 integer the schema stores.

Connection errors are one line naming the server without its password.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper, Loader

from .db import StoreError

CHANNEL = "tokenroute_changes"
_ANNOUNCE = f"SELECT pg_notify('{CHANNEL}', $1) WHERE pg_current_xact_id_if_assigned() IS NOT NULL"
CONNECT_TIMEOUT = 5  # seconds to reach the server before saying it cannot be reached
_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ"
_CONTROL = {"BEGIN IMMEDIATE": _BEGIN, "BEGIN": _BEGIN, "COMMIT": "COMMIT", "ROLLBACK": "ROLLBACK"}
_CONTROL_STARTS = {"BEGI", "COMM", "ROLL", "SAVE", "RELE"}
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|::|\?|:([A-Za-z_]\w*)|\bLIKE\b|\binstr\s*\(""",
    re.IGNORECASE,
)
_PLAIN = re.compile(r"""['":\-]|\bLIKE\b|\binstr\b""", re.IGNORECASE)  # needs the tokenizer
_CACHED_LENGTH = 4096  # longer texts (multi-row INSERTs) are translated each time, quickly
# SQLSTATE classes about the server, not about a job: connection, transaction rollback
# (serialization, deadlock), resources (disk full), prerequisite state (lock not
# available), operator intervention (shutdown), system and internal errors.
_DATABASE_CLASSES = {"08", "40", "53", "55", "57", "58", "XX"}
CONFLICTS = {"40001", "40P01"}  # serialization failure, deadlock: run the batch again


def translate(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """SQLite-flavoured store SQL in PostgreSQL's terms (see the module docstring): the
    text, and for `:name` placeholders the names in `$n` order (None: positional)."""
    if len(sql) <= _CACHED_LENGTH:
        return _translate_cached(sql)
    return _translate(sql)


def _translate(sql: str) -> tuple[str, tuple[str, ...] | None]:
    if not _PLAIN.search(sql):  # only `?`: the fast way, for thousands of them
        parts = sql.split("?")
        out = [parts[0]]
        for n, part in enumerate(parts[1:], 1):
            out += ("$", str(n), part)
        return "".join(out), None
    names: list[str] = []
    count = 0

    def one(match: re.Match[str]) -> str:
        nonlocal count
        token = match.group(0)
        if token[0] in "'\"" or token.startswith("--") or token == "::":
            return token  # a literal, a quoted name, a comment, a cast
        if token == "?":
            count += 1
            return f"${count}"
        name = match.group(1)
        if name:
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"
        if token.upper() == "LIKE":
            return "ILIKE"
        return "strpos("  # SQLite's instr(haystack, needle), same argument order

    text = _TOKEN.sub(one, sql)
    if names and count:
        raise ValueError("a statement mixes ? and :name placeholders")
    return text, (tuple(names) if names else None)


_translate_cached = functools.lru_cache(maxsize=2048)(_translate)


class Row(tuple):  # type: ignore[type-arg]
    """A result row read by index or by column name, like `sqlite3.Row`."""

    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}  # noqa: RUF012 (set per column list by `_row_class`)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"_names": names, "_index": {n: i for i, n in enumerate(names)}})


def _rows(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    cls = _row_class(tuple(column.name for column in description))
    return lambda values: cls(values)


class _IntegerNumeric(Loader):
    """`numeric` without a fraction (what `sum()` of integers gives) as an `int`."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class _BoolAsInteger(Dumper):
    """A Python bool as the 0/1 integer column the schema has (SQLite has no booleans)."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def configure(raw: psycopg.Connection[Any]) -> None:
    """Make a new connection speak like the store expects (the pool calls this too)."""
    raw.adapters.register_loader("numeric", _IntegerNumeric)
    raw.adapters.register_dumper(bool, _BoolAsInteger)
    raw.row_factory = _rows
    raw.cursor_factory = psycopg.RawCursor  # `$n` placeholders, sent as they are


class PgConnection:
    """The subset of `sqlite3.Connection` the store uses, over a psycopg connection.

    A COMMIT of a transaction that wrote something first NOTIFYs `CHANNEL` with `token`:
    other gateways drop their caches (`Store.on_external_change`), whoever committed.
    """

    dialect = "postgresql"

    def __init__(self, raw: psycopg.Connection[Any], token: str = "") -> None:
        self.raw = raw
        self.token = token

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        if sql[:4].upper() in _CONTROL_STARTS:  # transaction control: never prepared
            if sql == "COMMIT":
                self.raw.execute(_ANNOUNCE, (self.token,))
            return self.raw.execute(_CONTROL.get(sql.upper(), sql), prepare=False)
        text, names = translate(sql)
        named = names is not None and isinstance(params, Mapping)
        values = tuple(params[n] for n in names) if named else tuple(params)  # type: ignore[union-attr]
        return self.raw.execute(text, values)  # type: ignore[arg-type]

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> PgConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str) -> PgConnection:
    """A connection in autocommit mode (transactions are explicit), or one `StoreError` line."""
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except (psycopg.Error, ValueError) as exc:
        raise StoreError(describe(url, exc)) from None
    configure(raw)
    return PgConnection(raw)


def redact(url: str) -> str:
    """The URL with its password replaced by `***`, fit for a log line or an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unreadable URL)"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def describe(url: str, exc: BaseException) -> str:
    """One line about a failed connection: what the server or libpq said, no password."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    text = text.replace(url, redact(url)).removeprefix("connection failed: ")
    return f"cannot use the database {redact(url)}: {text}"


def about_the_server(exc: BaseException) -> bool:
    """Whether a psycopg error is about the server or the connection, not about one job."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in _DATABASE_CLASSES or state == "25006"  # 25006: read-only transaction


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, psycopg.Error) and exc.sqlstate in CONFLICTS


def lost_connection(exc: BaseException, raw: psycopg.Connection[Any] | None) -> bool:
    """The server dropped this connection (a restart, `pg_terminate_backend`): worth one
    more try on a fresh one before calling the database failing."""
    return isinstance(exc, psycopg.OperationalError) and (raw is None or raw.closed)
