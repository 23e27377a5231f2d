"""Money leases and the processes that hold them (SCALING.md has the design).

Each function is one step inside the writer's batch transaction (or `transaction()`),
in the SQL both engines share. The invariants they keep, whatever processes interleave:
`0 <= leased <= balance` on every key (a CHECK), and a key's `leased` equals the sum of its
rows in `leases` (both sides change in the same transaction).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass

from ..core.pids import running
from .accounts import Missing, now_ms


@dataclass(frozen=True, slots=True)
class Taken:
    granted: int  # money added to this owner's lease on the key
    free: int  # the key's free balance (balance - leased) afterwards
    exact: bool = False  # too little was free to lease more than the need


def register_owner(conn: sqlite3.Connection, owner: str) -> None:
    """A process that will take leases: alive from now on, as long as it heartbeats."""
    now = now_ms()
    conn.execute(
        "INSERT INTO owners (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        (owner, socket.gethostname(), os.getpid(), now, now),
    )


def take(
    conn: sqlite3.Connection, key_id: str, owner: str, need: int, want: int, processes: int
) -> Taken:
    """Lease money from the key's free balance to `owner`.

    When a fair share of the free balance (`free / (2 × processes)`) covers `need`, the
    grant is `want` bounded by that share, so one busy process cannot starve the others;
    when it does not, the key is nearly empty and the grant is exact: `need`, or whatever
    is free when that is less (the caller then refuses the request or sizes it down).
    """
    row = conn.execute("SELECT balance, leased FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    if row is None:
        raise Missing(f"no key with id {key_id}")
    free = int(row[0]) - int(row[1])
    share = free // (2 * max(1, processes))
    exact = share < need or share == 0
    grant = min(need, free) if exact else min(max(want, need), share)
    if grant <= 0:
        return Taken(0, max(free, 0), exact)
    updated = conn.execute(
        "UPDATE api_keys SET leased = leased + ? WHERE id = ? AND balance - leased >= ? "
        "RETURNING balance - leased",
        (grant, key_id, grant),
    ).fetchone()
    if updated is None:  # another process took it between the read and the update
        return Taken(0, 0, True)
    conn.execute(
        "INSERT INTO leases (key_id, owner, amount, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key_id, owner) DO UPDATE "
        "SET amount = leases.amount + excluded.amount, updated_at = excluded.updated_at",
        (key_id, owner, grant, now_ms()),
    )
    return Taken(grant, int(updated[0]), exact)


def give_back(conn: sqlite3.Connection, key_id: str, owner: str, amount: int) -> int:
    """Return up to `amount` of `owner`'s lease on the key; what was returned.

    Less than asked only when the lease was reclaimed meanwhile (the owner was taken for
    dead): then nothing of it is left to return.
    """
    row = conn.execute(
        "SELECT amount FROM leases WHERE key_id = ? AND owner = ?", (key_id, owner)
    ).fetchone()
    returned = min(amount, int(row[0])) if row else 0
    if returned > 0:
        conn.execute(
            "UPDATE leases SET amount = amount - ?, updated_at = ? WHERE key_id = ? AND owner = ?",
            (returned, now_ms(), key_id, owner),
        )
        conn.execute("UPDATE api_keys SET leased = leased - ? WHERE id = ?", (returned, key_id))
    conn.execute("DELETE FROM leases WHERE key_id = ? AND owner = ? AND amount = 0",
                 (key_id, owner))  # fmt: skip
    return returned


def free_balances(conn: sqlite3.Connection, key_ids: list[str]) -> dict[str, int]:
    """Each key's free balance: what no process has leased."""
    out: dict[str, int] = {}
    for start in range(0, len(key_ids), 500):
        part = key_ids[start : start + 500]
        marks = ", ".join("?" * len(part))
        rows = conn.execute(
            f"SELECT id, balance - leased FROM api_keys WHERE id IN ({marks})", part
        )
        out.update({r[0]: int(r[1]) for r in rows})
    return out


@dataclass(frozen=True, slots=True)
class Heartbeat:
    alive: bool  # False: this owner had been taken for dead and its leases reclaimed
    processes: int  # owners alive now, this one included
    reclaimed: tuple[Reclaimed, ...]


@dataclass(frozen=True, slots=True)
class Reclaimed:
    owner: str
    leases: int  # money returned to the keys' free balances
    holds: int  # hold rows dropped (requests that died with their process)


def touch(conn: sqlite3.Connection, owner: str) -> bool:
    """Prove `owner` alive and nothing more (one statement, its own transaction): False
    once it was reclaimed, which the full `heartbeat` then repairs."""
    cur = conn.execute("UPDATE owners SET heartbeat_at = ? WHERE id = ?", (now_ms(), owner))
    return bool(cur.rowcount == 1)


def heartbeat(conn: sqlite3.Connection, owner: str, reclaim_after_ms: int) -> Heartbeat:
    """Prove `owner` alive, and reclaim what owners silent for longer than the limit hold."""
    now = now_ms()
    alive = (
        conn.execute("UPDATE owners SET heartbeat_at = ? WHERE id = ?", (now, owner)).rowcount == 1
    )
    if not alive:
        register_owner(conn, owner)
    reclaimed = reclaim(conn, stale_before=now - reclaim_after_ms)
    processes = conn.execute(
        "SELECT count(*) FROM owners WHERE heartbeat_at >= ?", (now - reclaim_after_ms,)
    ).fetchone()[0]
    return Heartbeat(alive, int(processes), reclaimed)


def reclaim(
    conn: sqlite3.Connection, *, stale_before: int, dead: tuple[str, ...] = ()
) -> tuple[Reclaimed, ...]:
    """Release the leases and holds of owners that are gone.

    Gone: a heartbeat older than `stale_before`, an owner named in `dead` (a process known
    to have exited), and the owner of any lease or hold with no owner row at all (rows
    written before leases existed, or by an owner already reclaimed).
    """
    stale = conn.execute("SELECT id FROM owners WHERE heartbeat_at < ?", (stale_before,))
    orphans = conn.execute(
        "SELECT DISTINCT owner FROM leases WHERE owner NOT IN (SELECT id FROM owners)"
    )
    gone = {r[0] for r in stale} | set(dead) | {r[0] for r in orphans}
    orphan_holds = conn.execute(
        "DELETE FROM holds WHERE owner IS NULL OR owner NOT IN (SELECT id FROM owners) RETURNING id"
    ).fetchall()
    out = []
    for owner in sorted(gone):
        returned = 0
        for key_id, amount in conn.execute(
            "DELETE FROM leases WHERE owner = ? RETURNING key_id, amount", (owner,)
        ).fetchall():
            conn.execute("UPDATE api_keys SET leased = leased - ? WHERE id = ?", (amount, key_id))
            returned += int(amount)
        holds = conn.execute("DELETE FROM holds WHERE owner = ? RETURNING id", (owner,)).fetchall()
        conn.execute("DELETE FROM owners WHERE id = ?", (owner,))
        out.append(Reclaimed(owner, returned, len(holds)))
    if orphan_holds:
        out.append(Reclaimed("", 0, len(orphan_holds)))
    return tuple(out)


def dead_here(conn: sqlite3.Connection) -> tuple[str, ...]:
    """Owners on this host whose process no longer runs: gone at once, without waiting for
    their heartbeat to age (a gateway restarted after a crash gets its money back now)."""
    host = socket.gethostname()
    gone = []
    for owner, pid in conn.execute("SELECT id, pid FROM owners WHERE host = ?", (host,)):
        if pid != os.getpid() and not running(int(pid)):
            gone.append(owner)
    return tuple(gone)


def reclaim_dead_here(conn: sqlite3.Connection) -> tuple[Reclaimed, ...]:
    """At start-up: release what this host's dead processes (and rows with no owner) left."""
    return reclaim(conn, stale_before=0, dead=dead_here(conn))


def reclaim_pid(conn: sqlite3.Connection, pid: int) -> tuple[Reclaimed, ...]:
    """A process of this host that exited (its supervisor saw it): reclaimed at once."""
    rows = conn.execute(
        "SELECT id FROM owners WHERE host = ? AND pid = ?", (socket.gethostname(), pid)
    )
    return reclaim(conn, stale_before=0, dead=tuple(r[0] for r in rows))


def retire(conn: sqlite3.Connection, owner: str) -> int:
    """A process stopping cleanly: every lease back, its row gone; the money returned."""
    reclaimed = reclaim(conn, stale_before=0, dead=(owner,))
    return sum(r.leases for r in reclaimed if r.owner == owner)


def problems(conn: sqlite3.Connection) -> list[str]:
    """Keys whose `leased` disagrees with their lease rows (for `admin check`)."""
    return [
        f"key {key_id}: leased {leased} but its leases sum to {total}"
        for key_id, leased, total in conn.execute(
            "SELECT k.id, k.leased, coalesce(l.total, 0) FROM api_keys k "
            "LEFT JOIN (SELECT key_id, sum(amount) AS total FROM leases GROUP BY key_id) l "
            "ON l.key_id = k.id WHERE k.leased != coalesce(l.total, 0)"
        )
    ]
