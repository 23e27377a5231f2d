"""Per-key spendable money in this process: reserve before a request, settle after.

The gateway is the only spender of its database's balances, so the exact
available amount of a key lives here, where checking and holding it is one step
on the event loop: hundreds of concurrent requests on one key cannot overspend it,
and none waits on another or on the disk. The database stays the record: every
hold is written to `holds`, and each settlement (usage row, debit, hold released)
is one transaction whose conditional UPDATE and `CHECK (balance >= 0)` are the
backstop.

A wallet's `committed` mirrors the key's balance in the database; `pending` is
what settlements queued but not yet committed will take. Holds and settlements
go to the writer as one job per writer batch (`_Books`); a request that ends
before its hold was written never writes the hold at all. Balances changed by
another process (`tokenroute admin grant`) are re-read through the writer, in
order with our own settlements, so neither is counted twice.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..core.errors import InsufficientQuota, ServiceUnavailable
from ..store import Store, UsageRecord
from ..store.ledger import balances, record_batch
from .budget import RouteBudget

log = logging.getLogger("tokenroute.money")


@dataclass(slots=True)
class Wallet:
    committed: int
    pending: int = 0
    held: int = 0
    holds: int = 0  # open holds; a wallet with none can be forgotten

    @property
    def available(self) -> int:
        return self.committed - self.pending - self.held


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    key_id: str
    amount: int


@dataclass(slots=True)
class _Books:
    """What one writer batch records: holds to persist, requests to settle."""

    holds: dict[str, tuple[str, str, str, int, int]] = field(default_factory=dict)
    settlements: list[tuple[UsageRecord, str | None]] = field(default_factory=list)
    wallets: list[Wallet | None] = field(default_factory=list)


class Wallets:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._wallets: dict[str, Wallet] = {}
        self._loading: dict[str, trio.Event] = {}
        self._ids = itertools.count(1)
        self._boot = secrets.token_hex(4)
        self._books: _Books | None = None  # open until the writer takes it
        store.on_external_change(self._changed_elsewhere)

    async def available(self, key_id: str) -> int:
        return (await self._wallet(key_id)).available

    async def reserve(
        self, key_id: str, request_id: str, plan: Callable[[int], RouteBudget]
    ) -> tuple[Hold, RouteBudget]:
        """Hold what `plan(available)` asks for; `plan` raises 402 when it is too little."""
        if self._store.failing is not None:  # fail closed: no paid request it cannot record
            raise ServiceUnavailable(
                "the gateway cannot record usage right now (its database refuses writes); "
                "retry shortly",
                headers={"retry-after": "5"},
            )
        wallet = await self._wallet(key_id)
        budget = plan(wallet.available)  # no await between the check and the hold
        if budget.hold > wallet.available:
            raise InsufficientQuota("this key's balance is used by requests in flight")
        wallet.held += budget.hold
        wallet.holds += 1
        hold = Hold(f"{self._boot}-{next(self._ids)}", key_id, budget.hold)
        row = (hold.id, key_id, request_id, hold.amount, int(time.time() * 1000))
        self._open_books().holds[hold.id] = row
        return hold, budget

    def settle(self, hold: Hold | None, record: UsageRecord) -> None:
        """Release the hold and queue the usage row with its debit: never waits."""
        books = self._open_books()
        wallet = None
        written_hold: str | None = None
        if hold is not None:
            wallet = self._wallets[hold.key_id]
            wallet.held -= hold.amount
            wallet.holds -= 1
            wallet.pending += record.cost
            if books.holds.pop(hold.id, None) is None:
                written_hold = hold.id  # an earlier batch wrote it: delete it
        books.settlements.append((record, written_hold))
        books.wallets.append(wallet)

    def _open_books(self) -> _Books:
        books = self._books
        if books is None:
            books = self._books = _Books()

            def seal() -> None:
                self._books = None

            def done(charged: list[int] | None, error: BaseException | None) -> None:
                self._recorded(books, charged, error)

            self._store.submit(
                record_batch, books.holds.values(), books.settlements, on_done=done, seal=seal
            )
        return books

    def _recorded(
        self, books: _Books, charged: list[int] | None, error: BaseException | None
    ) -> None:
        if error is not None or charged is None:
            log.error("%d usage rows were not recorded: %s", len(books.settlements), error)
            charged = [0] * len(books.settlements)
        for (record, _), wallet, amount in zip(
            books.settlements, books.wallets, charged, strict=True
        ):
            if wallet is None:
                continue
            wallet.pending -= record.cost
            wallet.committed -= amount
            if record.key_id is not None:
                self._forget_if_idle(record.key_id, wallet)

    def refresh(self, key_ids: list[str] | None = None) -> trio.Event:
        """Re-read balances (every known one by default) in order with our own settlements.

        Called when another process changed the database, or when this one moved credit
        (`reload`). The re-read is applied on the writer's callback, in order with the
        settlements committed around it, so neither is counted twice; the event is set
        once it is applied.
        """
        applied = trio.Event()
        ids = [k for k in (self._wallets if key_ids is None else key_ids) if k in self._wallets]
        if not ids:
            applied.set()
            return applied

        def reread(found: dict[str, int] | None, error: BaseException | None) -> None:
            if error is not None or found is None:
                log.error("could not re-read balances: %s", error)
            else:
                for key_id in ids:
                    wallet = self._wallets.get(key_id)
                    if wallet is not None and key_id in found:
                        wallet.committed = found[key_id]
            applied.set()

        self._store.submit(balances, ids, on_done=reread)
        return applied

    def _changed_elsewhere(self) -> None:
        self.refresh()  # another process wrote to the database (e.g. `tokenroute admin grant`)

    async def reload(self, key_id: str) -> None:
        """Credit moved by this process: spendable once this returns."""
        await self.refresh([key_id]).wait()

    async def _wallet(self, key_id: str) -> Wallet:
        wallet = self._wallets.get(key_id)
        while wallet is None:
            loading = self._loading.get(key_id)
            if loading is not None:
                await loading.wait()
            else:
                self._loading[key_id] = loading = trio.Event()
                try:
                    found = await self._store.write(balances, [key_id])
                    if key_id in found:  # through the writer: after our own settlements
                        self._wallets[key_id] = Wallet(found[key_id])
                finally:
                    del self._loading[key_id]
                    loading.set()
                if key_id not in found:
                    raise KeyError(key_id)
            wallet = self._wallets.get(key_id)
        return wallet

    def _forget_if_idle(self, key_id: str, wallet: Wallet) -> None:
        if wallet.holds == 0 and wallet.pending == 0 and len(self._wallets) > 10_000:
            self._wallets.pop(key_id, None)
