"""Per-key spendable money in this process: a lease taken from the store, spent locally.

Several processes may spend the same keys (workers, gateways on other machines), so this
process owns only what it leased: money moved out of the key's free balance by a
conditional update (`store.leases.take`), so that the leases of every process together
never exceed the balance. Checking and holding against the lease is one step on the event
loop: hundreds of concurrent requests on one key cannot overspend it, and in the common
case none waits on the store. A request the lease cannot cover takes more first (one
store round trip); a lease running low is topped up in the background, ahead of need; a
lease unused for `lease_idle` seconds, or on a key whose free balance is running out, goes
back; everything goes back on shutdown. A nearly empty key is exact: each request leases
just its hold and gives back what it did not spend when it settles. SCALING.md has the
design and its invariants.

The database stays the record: holds are written to `holds` (with this process as their
owner), each settlement (usage row, debit from the lease, hold released) is one
transaction, and `CHECK (leased <= balance)` is the backstop. A process that cannot prove
it is alive (its heartbeat is not committed for two thirds of `reclaim_after`) stops taking
paid requests: other processes may take it for dead and reclaim its leases.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..core.errors import InsufficientQuota, ServiceUnavailable
from ..core.money import UNITS_PER_USD, format_usd
from ..store import Store, UsageRecord
from ..store import leases as store_leases
from ..store.ledger import Settled, record_batch
from .budget import RouteBudget
from .pulse import Pulse

log = logging.getLogger("tokenroute.money")

LEASE_FLOOR = UNITS_PER_USD // 20  # $0.05: the smallest lease worth a store round trip
EMPTY_PAUSE = 0.25  # seconds: a key found empty is not asked again sooner (unless it changed)
ABUNDANT = 10**18  # a balance no request exhausts: sizes a request's full hold
# A process stops spending once its last committed heartbeat is this share of
# `reclaim_after` old: others take it for dead only at the whole of it, and the rest is the
# margin for clocks that differ between machines.
FENCE = 2 / 3
MAX_TAKES = 20  # store round trips one request may wait for (each takes part of what is free)
TAKE_PATIENCE = 10.0  # seconds a request waits for a lease before it gets 503


@dataclass(slots=True)
class Wallet:
    lease: int = 0  # this process's lease on the key, as the store has it
    pending: int = 0  # costs of settlements queued, not yet committed
    held: int = 0
    holds: int = 0  # open holds
    free: int | None = None  # the key's free balance as last seen (None: not yet)
    target: int = LEASE_FLOOR  # the lease this key's traffic wants
    exact: bool = False  # too empty to split: keep no spare lease
    used_at: float = 0.0
    empty_until: float = -math.inf
    taking: trio.Event | None = None  # a take under way
    demand: int = 0  # what requests waiting for that take need on top of it

    @property
    def available(self) -> int:
        return self.lease - self.pending - self.held


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    key_id: str
    amount: int


@dataclass(slots=True)
class _Books:
    """What one writer batch records: holds to persist, requests to settle."""

    holds: dict[str, tuple[str, str, str, int, int, str]] = field(default_factory=dict)
    settlements: list[tuple[UsageRecord, str | None]] = field(default_factory=list)
    wallets: list[Wallet | None] = field(default_factory=list)


class Wallets:
    def __init__(self, store: Store, *, reclaim_after: float = 15.0, lease_idle: float = 30.0):
        self._store = store
        self._reclaim_after = reclaim_after
        self._lease_idle = lease_idle
        self._wallets: dict[str, Wallet] = {}
        self._ids = itertools.count(1)
        self.owner = secrets.token_hex(8)  # this process in `owners`, `leases` and `holds`
        self._processes = 1  # processes alive, from the last heartbeat
        self._pulse = Pulse(store, self.owner, reclaim_after / 5)  # alive while the loop is busy
        self._books: _Books | None = None  # open until the writer takes it
        store.on_external_change(self._changed_elsewhere)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> tuple[int, int]:
        """Register this process; release what dead processes of this host left behind:
        (holds released, money returned to keys)."""
        await self._store.write(store_leases.register_owner, self.owner)
        found = await self._store.write(store_leases.reclaim_dead_here)
        await self._beat()
        return sum(r.holds for r in found), sum(r.leases for r in found)

    async def run(self) -> None:
        """Heartbeat, reclaim the dead, return idle and no longer needed leases."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pulse.run)
            while True:
                await trio.sleep(self._reclaim_after / 5)
                try:
                    await self._beat()
                except Exception as exc:  # the store refuses writes: fenced until it takes one
                    log.error("heartbeat not recorded: %s", exc)
                    continue
                await self._return_spare()

    async def retire(self) -> None:
        """Shutting down: every lease back to its key, this process gone from `owners`."""
        returned = await self._store.write(store_leases.retire, self.owner)
        for wallet in self._wallets.values():
            wallet.lease = 0
        if returned:
            log.info("returned leases of $%s", format_usd(returned))

    # -- requests ------------------------------------------------------------------------
    async def available(self, key_id: str) -> int:
        """What the key can spend as far as this process knows: its lease and the free
        balance last seen (read once when the key is new here)."""
        wallet = self._wallets.get(key_id)
        if wallet is None or wallet.free is None:
            free = (await self._store.read(store_leases.free_balances, [key_id])).get(key_id)
            if free is None:
                raise KeyError(key_id)
            wallet = self._wallets.setdefault(key_id, Wallet(used_at=trio.current_time()))
            wallet.free = free
        return wallet.available + max(0, wallet.free or 0)

    async def reserve(
        self, key_id: str, request_id: str, plan: Callable[[int], RouteBudget]
    ) -> tuple[Hold, RouteBudget]:
        """Hold what `plan(available)` asks for; `plan` raises 402 when it is too little."""
        self._check_may_spend()
        wallet = self._wallets.setdefault(key_id, Wallet())
        wallet.used_at = trio.current_time()  # not idle while this request needs it
        for _ in range(MAX_TAKES):  # lease more, while the store has more to lease
            try:
                if plan(wallet.available).roomy:
                    break
            except InsufficientQuota:
                pass
            need = plan(ABUNDANT).hold - wallet.available
            if need <= 0 or trio.current_time() < wallet.empty_until:
                break
            await self._take(key_id, wallet, need)
            self._check_may_spend()
        budget = plan(wallet.available)  # no await between the check and the hold
        if budget.hold > wallet.available:
            raise InsufficientQuota("this key's balance is used by requests in flight")
        wallet.held += budget.hold
        wallet.holds += 1
        wallet.used_at = trio.current_time()
        hold = Hold(f"{self.owner}-{next(self._ids)}", key_id, budget.hold)
        row = (hold.id, key_id, request_id, hold.amount, int(time.time() * 1000), self.owner)
        self._open_books().holds[hold.id] = row
        if not wallet.exact and wallet.taking is None and wallet.available < wallet.target // 2:
            self._top_up(key_id, wallet)
        return hold, budget

    def settle(self, hold: Hold | None, record: UsageRecord) -> None:
        """Release the hold and queue the usage row with its debit: never waits."""
        books = self._open_books()
        wallet = self._wallets.get(record.key_id) if record.key_id is not None else None
        written_hold: str | None = None
        if hold is not None and wallet is not None:
            wallet.held -= hold.amount
            wallet.holds -= 1
            if books.holds.pop(hold.id, None) is None:
                written_hold = hold.id  # an earlier batch wrote it: delete it
        if wallet is not None:
            wallet.pending += record.cost
        books.settlements.append((record, written_hold))
        books.wallets.append(wallet)

    def _check_may_spend(self) -> None:
        if self._store.failing is not None:  # fail closed: no paid request it cannot record
            raise ServiceUnavailable(
                "the gateway cannot record usage right now (its database refuses writes); "
                "retry shortly",
                headers={"retry-after": "5"},
            )
        if self._pulse.silent_for() > self._reclaim_after * FENCE:
            raise ServiceUnavailable(
                "the gateway cannot reach its database to prove it is alive; retry shortly",
                headers={"retry-after": "5"},
            )

    # -- leases --------------------------------------------------------------------------
    async def _take(self, key_id: str, wallet: Wallet, need: int) -> None:
        """Lease at least `need` more (less when the key has less); one take at a time.

        The take is applied when it commits, whether or not anyone still waits for it (a
        request may leave, or give up on a database that refuses writes: 503)."""
        taking = wallet.taking
        if taking is not None:
            wallet.demand += need  # the next take asks for it too
        else:
            wallet.taking = taking = trio.Event()
            need, wallet.demand = need + wallet.demand, 0
            wallet.target = max(wallet.target, 2 * (need + wallet.held))

            def done(taken: store_leases.Taken | None, error: BaseException | None) -> None:
                wallet.taking = None
                taking.set()
                if taken is not None:
                    self._took(wallet, taken, need)
                elif error is not None:
                    log.error("could not lease money for a key: %s", error)

            self._store.submit(
                store_leases.take, key_id, self.owner, need, wallet.target, self._processes,
                on_done=done,
            )  # fmt: skip
        with trio.move_on_after(TAKE_PATIENCE):
            while not taking.is_set():  # the caller plans again with what came
                with trio.move_on_after(0.05):
                    await taking.wait()
                self._check_may_spend()  # the database started refusing writes: 503
        if not taking.is_set():
            raise ServiceUnavailable(
                "the gateway's database is too slow to answer right now; retry shortly",
                headers={"retry-after": "5"},
            )

    def _top_up(self, key_id: str, wallet: Wallet) -> None:
        """Take the next lease while this one still lasts: the request path does not wait."""
        wallet.taking = taking = trio.Event()

        def done(taken: store_leases.Taken | None, error: BaseException | None) -> None:
            wallet.taking = None
            taking.set()
            if taken is not None:
                self._took(wallet, taken, 0)

        self._store.submit(
            store_leases.take, key_id, self.owner, 0, wallet.target, self._processes, on_done=done
        )

    def _took(self, wallet: Wallet, taken: store_leases.Taken, need: int) -> None:
        wallet.lease += taken.granted
        wallet.free = taken.free
        wallet.exact = taken.exact
        if taken.granted == 0 and need > 0:  # nothing at all is free
            wallet.empty_until = trio.current_time() + EMPTY_PAUSE

    def _give_back(self, key_id: str, wallet: Wallet, amount: int) -> None:
        """Return `amount` of the lease: gone from here at once, from the store on commit."""
        if amount <= 0:
            return
        wallet.lease -= amount
        # Not empty: a take queued after this finds the amount free (one writer, in order).
        wallet.empty_until = -math.inf

        def done(returned: int | None, error: BaseException | None) -> None:
            if error is not None:  # still leased in the store: still ours to spend
                wallet.lease += amount
            elif returned:
                wallet.free = (wallet.free or 0) + returned
                wallet.empty_until = -math.inf  # there is money to lease again

        self._store.submit(store_leases.give_back, key_id, self.owner, amount, on_done=done)

    async def _beat(self) -> None:
        reclaim_ms = int(self._reclaim_after * 1000)
        began = time.monotonic()
        beat = await self._store.write(store_leases.heartbeat, self.owner, reclaim_ms)
        self._pulse.committed(began)
        self._processes = beat.processes
        for gone in beat.reclaimed:
            log.warning(
                "reclaimed $%s of leases and %d holds from a gateway process that stopped "
                "heartbeating", format_usd(gone.leases), gone.holds,
            )  # fmt: skip
        if not beat.alive:
            log.error("this process was taken for dead and its leases reclaimed; leasing anew")
            for wallet in self._wallets.values():
                wallet.lease, wallet.exact = 0, False

    async def _return_spare(self) -> None:
        """Give back leases idle for `lease_idle`, and spare leases of keys running low."""
        now = trio.current_time()
        leased = [k for k, w in self._wallets.items() if w.lease > 0 and w.taking is None]
        if leased:
            free = await self._store.read(store_leases.free_balances, leased)
            for key_id in leased:
                wallet = self._wallets.get(key_id)
                if wallet is None or key_id not in free:
                    continue
                wallet.free = free[key_id]
                if wallet.free < wallet.target:  # others may need it: keep none spare
                    wallet.exact = True
        for key_id, wallet in list(self._wallets.items()):
            idle = wallet.holds == 0 and now - wallet.used_at > self._lease_idle
            if wallet.taking is None and (idle or wallet.exact):
                self._give_back(key_id, wallet, wallet.available)
            if idle and wallet.taking is None and wallet.lease == 0 and wallet.pending == 0:
                del self._wallets[key_id]

    # -- the books -----------------------------------------------------------------------
    def _open_books(self) -> _Books:
        books = self._books
        if books is None:
            books = self._books = _Books()

            def seal() -> None:
                self._books = None

            def done(settled: Settled | None, error: BaseException | None) -> None:
                self._recorded(books, settled, error)

            self._store.submit(
                record_batch, books.holds.values(), books.settlements, self.owner,
                on_done=done, seal=seal,
            )  # fmt: skip
        return books

    def _recorded(
        self, books: _Books, settled: Settled | None, error: BaseException | None
    ) -> None:
        if error is not None or settled is None:
            log.error("%d usage rows were not recorded: %s", len(books.settlements), error)
            settled = Settled()
        for (record, _), wallet in zip(books.settlements, books.wallets, strict=True):
            if wallet is not None:
                wallet.pending -= record.cost
        for key_id, spent in settled.from_lease.items():
            wallet = self._wallets.get(key_id)
            if wallet is None:
                continue
            wallet.lease -= spent
            wallet.free = settled.free.get(key_id, wallet.free)
            if wallet.free is not None and wallet.free < wallet.target:
                wallet.exact = True
            if wallet.exact and wallet.taking is None:
                self._give_back(key_id, wallet, wallet.available)

    def refresh(self, key_ids: list[str] | None = None) -> None:
        """Balances changed (a grant, a top-up): a key found empty may be asked again."""
        for key_id in self._wallets if key_ids is None else key_ids:
            wallet = self._wallets.get(key_id)
            if wallet is not None:
                wallet.empty_until = -math.inf
                wallet.free = None if wallet.holds == 0 and wallet.lease == 0 else wallet.free

    def _changed_elsewhere(self) -> None:
        self.refresh()  # another process wrote to the database (e.g. `tokenroute admin grant`)

    async def reload(self, key_id: str) -> None:
        """Credit moved by this process: spendable once this returns."""
        self.refresh([key_id])
