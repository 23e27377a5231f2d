"""The money ledger: every balance change is a row, in the same transaction as the change.

Plain SQL on a connection, without transaction control of its own: they run
inside the writer's batch transaction (`Store.write`), or inside `transaction()`
on a connection of one's own. The invariant kept everywhere: a key's `balance` equals the sum
of its ledger rows, and a usage row that cost something has exactly one debit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from ..core.money import format_usd
from . import leases, retention
from .accounts import AccountError, Missing, now_ms
from .dialect import next_ids, utc_day
from .rollups import roll_up
from .usage import USAGE_COLUMNS, UsageRecord, usage_values

KINDS = ("grant", "topup", "usage", "transfer", "refund", "dispute", "adjustment")


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction for a command-line operation."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def credit(
    conn: sqlite3.Connection,
    key_id: str,
    amount: int,
    *,
    kind: str = "grant",
    reference: str | None = None,
    actor: str = "admin",
    note: str | None = None,
) -> int:
    """Add (or, for an adjustment, take) money; the new balance. Never below zero."""
    if kind not in KINDS or kind == "usage":
        raise AccountError(f"not a credit kind: {kind}")
    if amount == 0:
        raise AccountError("the amount is zero")
    row = conn.execute(
        "UPDATE api_keys SET balance = balance + ? WHERE id = ? AND balance + ? >= leased "
        "RETURNING balance",
        (amount, key_id, amount),
    ).fetchone()
    if row is None:
        if conn.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None:
            raise Missing(f"no key with id {key_id}")
        leased = conn.execute("SELECT leased FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if leased and leased[0]:
            raise AccountError(
                "the balance cannot go below what requests in flight hold "
                f"(${format_usd(leased[0])}); retry in a minute"
            )
        raise AccountError("the balance cannot go below zero")
    conn.execute(
        "INSERT INTO ledger (key_id, kind, amount, reference, actor, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key_id, kind, amount, reference, actor, note, now_ms()),
    )
    return int(row[0])


@dataclass(slots=True)
class Settled:
    """What a batch of settlements did: the amount charged each (in order), and per key the
    part taken from this process's lease and the key's free balance afterwards."""

    charged: list[int] = field(default_factory=list)
    from_lease: dict[str, int] = field(default_factory=dict)
    free: dict[str, int] = field(default_factory=dict)


def record_batch(
    conn: sqlite3.Connection,
    new_holds: Iterable[tuple[str, str, str, int, int, str | None]],
    settlements: list[tuple[UsageRecord, str | None]],
    owner: str | None = None,
) -> Settled:
    """Persist holds and settle requests, a writer batch at a time.

    Each settlement writes its usage row, debits its cost from `owner`'s lease on the key
    (what the lease lacks, from the key's free balance; never below what other processes
    leased: what the balance cannot cover stays on the row as `unbilled`, possible only
    when an upstream ignored the limit its hold was sized for, or when this process's
    lease was reclaimed under it), adds the debit to the ledger and drops its hold. Rows
    go in as multi-row statements: a handful of statements per batch rather than several
    per request, because every statement hands the GIL back and forth with the event
    loop's thread.
    """
    _insert_rows(
        conn,
        "holds",
        ("id", "key_id", "request_id", "amount", "created_at", "owner"),
        list(new_holds),
    )
    if not settlements:
        return Settled()
    settled = _charge(conn, settlements, owner)
    ids = next_ids(conn, "usage", len(settlements))  # a sequence on PostgreSQL
    usage_rows, debits, billed_rows = [], [], []
    for offset, ((record, _), amount) in enumerate(zip(settlements, settled.charged, strict=True)):
        billed = replace(record, cost=amount, unbilled=record.cost - amount)
        billed_rows.append(billed)
        usage_rows.append((ids[offset], *usage_values(billed)))
        if amount:
            debits.append(
                (record.key_id, -amount, record.request_id, ids[offset], record.created_at)
            )
    _insert_rows(conn, "usage", ("id", *USAGE_COLUMNS), usage_rows)
    roll_up(conn, billed_rows)  # SQLite: its trigger already did
    _insert_rows(
        conn,
        "ledger",
        ("key_id", "amount", "reference", "usage_id", "created_at", "kind", "actor"),
        [(*debit, "usage", "gateway") for debit in debits],
    )
    released = [hold_id for _, hold_id in settlements if hold_id is not None]
    for start in range(0, len(released), 500):
        part = released[start : start + 500]
        conn.execute(f"DELETE FROM holds WHERE id IN ({', '.join('?' * len(part))})", part)
    return settled


def _charge(
    conn: sqlite3.Connection, settlements: list[tuple[UsageRecord, str | None]], owner: str | None
) -> Settled:
    """Debit each key once for the batch; clamp request by request only for a short balance."""
    totals: dict[str, int] = {}
    for record, _ in settlements:
        if record.cost > 0 and record.key_id is not None:
            totals[record.key_id] = totals.get(record.key_id, 0) + record.cost
    settled = Settled()
    paid: dict[str, int] = {}  # keys that cannot pay their whole total: what they can
    for key_id, total in sorted(totals.items()):  # one lock order for every gateway
        from_lease = _from_lease(conn, key_id, owner, total)
        row = conn.execute(
            "UPDATE api_keys SET balance = balance - ?, leased = leased - ? "
            "WHERE id = ? AND balance - leased >= ? RETURNING balance - leased",
            (total, from_lease, key_id, total - from_lease),
        ).fetchone()
        if row is None:  # short: the lease and the free balance pay what they can
            free = conn.execute(
                "SELECT balance - leased FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
            paid[key_id] = from_lease + max(0, int(free[0])) if free else 0
            row = conn.execute(
                "UPDATE api_keys SET balance = balance - ?, leased = leased - ? WHERE id = ? "
                "RETURNING balance - leased",
                (paid[key_id], from_lease, key_id),
            ).fetchone()
        settled.from_lease[key_id] = from_lease
        settled.free[key_id] = int(row[0]) if row else 0
    for record, _ in settlements:
        if record.key_id is None:
            settled.charged.append(0)
        elif record.key_id in paid:
            amount = min(max(record.cost, 0), paid[record.key_id])
            paid[record.key_id] -= amount
            settled.charged.append(amount)
        else:
            settled.charged.append(max(0, record.cost))
    return settled


def _from_lease(conn: sqlite3.Connection, key_id: str, owner: str | None, total: int) -> int:
    """Take up to `total` from `owner`'s lease on the key; how much it had."""
    if owner is None:
        return 0
    if (
        conn.execute(
            "UPDATE leases SET amount = amount - ? WHERE key_id = ? AND owner = ? AND amount >= ?",
            (total, key_id, owner, total),
        ).rowcount
        == 1
    ):
        return total
    row = conn.execute(
        "SELECT amount FROM leases WHERE key_id = ? AND owner = ?", (key_id, owner)
    ).fetchone()
    if row is None or row[0] == 0:
        return 0
    conn.execute("UPDATE leases SET amount = 0 WHERE key_id = ? AND owner = ?", (key_id, owner))
    return int(row[0])


def _insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[object, ...]]
) -> None:
    per_statement = max(1, 30_000 // len(columns))  # under SQLite's bound-variable limit
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        marks = "(" + ", ".join("?" * len(columns)) + ")"
        conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(part))}",
            [value for row in part for value in row],
        )


def balances(conn: sqlite3.Connection, key_ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(key_ids), 500):
        part = key_ids[start : start + 500]
        marks = ", ".join("?" * len(part))
        rows = conn.execute(f"SELECT id, balance FROM api_keys WHERE id IN ({marks})", part)
        out.update({r[0]: r[1] for r in rows})
    return out


def ledger_rows(conn: sqlite3.Connection, key_id: str, limit: int) -> list[dict[str, object]]:
    if conn.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None:
        raise Missing(f"no key with id {key_id}")
    rows = conn.execute(
        "SELECT id, kind, amount, reference, actor, note, created_at FROM ledger "
        "WHERE key_id = ? ORDER BY id DESC LIMIT ?",
        (key_id, limit),
    )
    return [dict(r) for r in rows]


def set_limits(
    conn: sqlite3.Connection,
    key_id: str,
    *,
    tier: str | None = None,
    rps: float | None = None,
    burst: int | None = None,
    max_streams: int | None = None,
) -> dict[str, object]:
    """Change a key's tier or its own limits; the key's limits afterwards."""
    changes = {"tier": tier, "rps": rps, "burst": burst, "max_streams": max_streams}
    given = {k: v for k, v in changes.items() if v is not None}
    if not given:
        raise AccountError("nothing to change: give --tier, --rps, --burst or --max-streams")
    assignments = ", ".join(f"{name} = :{name}" for name in given)
    row = conn.execute(
        f"UPDATE api_keys SET {assignments} WHERE id = :id RETURNING tier, rps, burst, max_streams",
        {**given, "id": key_id},
    ).fetchone()
    if row is None:
        raise Missing(f"no key with id {key_id}")
    return dict(row)


def open_holds(conn: sqlite3.Connection) -> int:
    """Holds of requests in flight (or left by a gateway that stopped)."""
    return int(conn.execute("SELECT count(*) FROM holds").fetchone()[0])


def check(conn: sqlite3.Connection) -> list[str]:
    """Every way the books can disagree, one line each; empty when they agree.

    Days before the retention horizon may have lost their raw usage rows: there the
    rollups are checked against each other and against the ledger's debits instead.
    """
    since = retention.horizon(conn)
    raw = conn.execute(
        "SELECT count(*), coalesce(sum(cost), 0) FROM usage WHERE created_at >= ?", (since,)
    ).fetchone()
    rollups = []
    for table in ("usage_daily", "usage_days", "usage_key_days"):
        rolled = conn.execute(
            f"SELECT coalesce(sum(requests), 0), coalesce(sum(cost), 0) FROM {table} "
            "WHERE day >= ?",
            (utc_day(since),),
        ).fetchone()
        if tuple(raw) != tuple(rolled):
            rollups.append(f"{table} counts {rolled[0]} requests costing {rolled[1]}, the "
                           f"usage rows {raw[0]} costing {raw[1]}")  # fmt: skip
    problems = (
        rollups
        + retention.pruned_days_problems(conn, since)
        + [
            f"key {key_id}: balance {balance} but its ledger sums to {total}"
            for key_id, balance, total in conn.execute(
                "SELECT k.id, k.balance, coalesce(l.total, 0) FROM api_keys k "
                "LEFT JOIN (SELECT key_id, sum(amount) AS total FROM ledger GROUP BY key_id) l "
                "ON l.key_id = k.id WHERE k.balance != coalesce(l.total, 0)"
            )
        ]
    )
    problems += [
        f"usage row {usage_id} (request {request_id}): cost {cost} but "
        + ("no debit" if debit is None else f"a debit of {debit}")
        for usage_id, request_id, cost, debit in conn.execute(
            "SELECT u.id, u.request_id, u.cost, l.amount FROM usage u "
            "LEFT JOIN ledger l ON l.usage_id = u.id "
            "WHERE u.cost != 0 AND (l.amount IS NULL OR l.amount != -u.cost)"
        )
    ]
    problems += [
        f"ledger row {row_id}: a usage debit of {amount} with no usage row"
        for row_id, amount in conn.execute(
            "SELECT l.id, l.amount FROM ledger l LEFT JOIN usage u ON u.id = l.usage_id "
            "WHERE l.kind = 'usage' AND u.id IS NULL AND l.created_at >= ?",
            (since,),  # before the horizon, retention deleted the row: the debit stays
        )
    ]
    problems += leases.problems(conn)
    problems += [
        f"ledger row {row_id}: a usage debit on usage row {usage_id} of another key"
        for row_id, usage_id in conn.execute(
            "SELECT l.id, l.usage_id FROM ledger l JOIN usage u ON u.id = l.usage_id "
            "WHERE l.key_id IS DISTINCT FROM u.key_id"
        )
    ]
    return problems
