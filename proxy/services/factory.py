"""Building the services once: the whole set for the server, or the operator's on a file.

`build_services` is what the app factory calls; `Services.start` runs their
background work (the store's writer, rate-limit housekeeping) in the app's nursery.
`with_operator` runs an operation with the account services on the database file,
without serving, for `tokenroute admin`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import outcome
import trio

from ..access.auth import KeyAuth
from ..access.limit_store import LimitStore
from ..access.ratelimit import RateLimiter, limit_store
from ..core.config import Settings
from ..core.money import format_usd
from ..money.metering import Meter
from ..money.reserve import Reservations
from ..money.tokens import TokenCounter
from ..money.wallet import Wallets
from ..providers import adapter_for, embedding_adapter_for
from ..routing.autoroute import AutoRouter
from ..routing.catalog import build_catalog
from ..routing.sessions import Sessions
from ..store import (
    Store,
)
from ..upstream.cooldown import Cooldowns
from ..upstream.documents import DocumentFetcher
from ..upstream.failover import Failover
from ..upstream.health import UpstreamHealth
from ..upstream.relay import Relay
from .accounts import AccountService
from .admin import AdminService
from .callers import Callers
from .chat import ChatService
from .database import migrate_database
from .device_flow import DeviceFlowService
from .embeddings import EmbeddingService
from .identity import IdentityService
from .metrics import Metrics
from .metrics_carry import CarriedCounts
from .metrics_export import MetricsExport, Siblings
from .metrics_peers import MetricsPeers
from .payments import PaymentService
from .reports import ReportService
from .retention import RetentionService
from .status import StatusService

T = TypeVar("T")
log = logging.getLogger("tokenroute")


@dataclass
class Services:
    """What every surface calls, built once per server from the settings."""

    settings: Settings
    chat: ChatService
    embeddings: EmbeddingService
    accounts: AccountService
    identity: IdentityService
    device_flow: DeviceFlowService
    admin: AdminService
    callers: Callers
    payments: PaymentService
    reports: ReportService
    status: StatusService
    retention: RetentionService
    metrics: Metrics  # what the surfaces count (refusals)
    metrics_export: MetricsExport  # `/metrics`
    _store: Store
    _relay: Relay
    _documents: DocumentFetcher
    _wallets: Wallets
    _tokens: TokenCounter
    _limits: LimitStore  # keys' limits and stream counts, upstream verdicts: maybe shared
    _auth: KeyAuth
    _housekeeping: trio.CancelScope
    _limits_scope: trio.CancelScope
    _peers: MetricsPeers | None  # a worker's siblings, for `/metrics`; None: alone

    async def start(self, nursery: trio.Nursery) -> None:
        """Open the store (migrating it) and start the background work in `nursery`."""
        await nursery.start(self._store.run)
        await nursery.start(self._run_limits)
        await self._auth.start()
        self._documents.open()
        await self.identity.start()
        released, amount = await self._wallets.start()
        if released or amount:
            log.warning(
                "released %d holds and $%s of leases left by a gateway process that stopped "
                "without settling them; the usage of those requests is unknown",
                released,
                format_usd(amount),
            )
        await self._tokens.load()
        self._relay.open()
        await nursery.start(self._keep_house)
        nursery.start_soon(self.retention.run)

    async def stop(self) -> None:
        """Stop background work, close upstream pools, let the writer commit what is queued."""
        self._housekeeping.cancel()
        self.retention.stop()
        with trio.move_on_after(10):
            await self._wallets.retire()
        await self._relay.aclose()
        await self._limits.aclose()  # after the streams: their slots are given back first
        self._limits_scope.cancel()
        await self._documents.aclose()
        await self.payments.aclose()
        self._store.close()
        await self._store.wait_stopped()

    def cut_streams(self, reason: str) -> int:
        """End every open stream with an error event (shutdown past its grace); how many."""
        cutter = self._relay.cutter
        open_reads = cutter.open_reads
        cutter.cut(reason)
        return open_reads

    async def _keep_house(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with self._housekeeping:
            async with trio.open_nursery() as nursery:
                if self._peers is not None:  # listening before we serve: siblings scrape us
                    await nursery.start(self._peers.serve, self.metrics_export.own)
                nursery.start_soon(self._wallets.run)
                nursery.start_soon(self.metrics.watch_loop)
                task_status.started()

    async def _run_limits(self, task_status: trio.TaskStatus[None]) -> None:
        with self._limits_scope:
            await self._limits.run(task_status=task_status)


def build_services(settings: Settings) -> Services:
    metrics = Metrics()  # the lower layers report to it through callbacks
    store = Store(
        settings.db_path,
        database_url=settings.scale.database_url,
        wal_autocheckpoint=settings.wal_autocheckpoint,
        on_batch=metrics.batch_committed,
    )
    scale = settings.scale
    wallets = Wallets(store, reclaim_after=scale.reclaim_after, lease_idle=scale.lease_idle)
    tokens = TokenCounter()
    catalog = build_catalog(settings)
    relay = Relay(
        {p.name: p for p in settings.providers},
        {p.name: adapter_for(p) for p in settings.providers},
    )
    limits = limit_store(settings)
    cooldowns = Cooldowns(settings, shared=limits.cooldowns)
    health = UpstreamHealth(cooldowns, on_failure=metrics.upstream_failed)
    limiter = RateLimiter(settings, limits)
    documents = DocumentFetcher()
    identity = IdentityService(store, settings, fetch_json=documents.get_json)
    auth = KeyAuth(store, settings.key_cache_seconds)
    accounts = AccountService(store, settings, auth, on_credit=wallets.reload)
    peers = _metrics_peers(settings)
    reservations = Reservations(
        wallets,
        tokens,
        default_cap=settings.max_output_tokens,
        min_completion=settings.min_completion_tokens,
    )
    meter = Meter(wallets, tokens, on_record=metrics.settled)
    failover = Failover(relay, health, on_fallback=metrics.fell_back)
    chat = ChatService(
        settings=settings,
        catalog=catalog,
        auto=AutoRouter(catalog, settings.auto),
        sessions=Sessions(settings.auto.session_seconds, clock=trio.current_time),
        limiter=limiter,
        reservations=reservations,
        meter=meter,
        failover=failover,
        tokens=tokens,
    )
    embeddings = EmbeddingService(
        settings=settings,
        catalog=catalog,
        limiter=limiter,
        reservations=reservations,
        meter=meter,
        failover=failover,
        adapters={p.name: embedding_adapter_for(p) for p in settings.providers},
    )
    return Services(
        settings=settings,
        chat=chat,
        embeddings=embeddings,
        accounts=accounts,
        admin=AdminService(accounts, store, settings),
        callers=Callers(accounts, identity),
        payments=PaymentService(
            store, settings, lambda: identity.base_url, on_credit=wallets.reload
        ),
        identity=identity,
        device_flow=_device_flow(store, settings, identity),
        status=StatusService(settings, store, catalog, health),
        reports=ReportService(store, health, lambda: relay.cutter.open_reads),
        retention=RetentionService(store, settings),
        metrics=metrics,
        metrics_export=MetricsExport(
            metrics,
            secret=settings.internal_secret,
            store=store,
            health=health,
            open_streams=lambda: limiter.open_streams,
            siblings=_siblings(settings, peers),
        ),
        _store=store,
        _relay=relay,
        _documents=documents,
        _wallets=wallets,
        _tokens=tokens,
        _limits=limits,
        _auth=auth,
        _housekeeping=trio.CancelScope(),
        _limits_scope=trio.CancelScope(),
        _peers=peers,
    )


def _metrics_peers(settings: Settings) -> MetricsPeers | None:
    role = settings.worker
    if role is None or role.count < 2:
        return None
    others = {i: role.metrics_socket(i) for i in range(role.count) if i != role.index}
    return MetricsPeers(role.metrics_socket(role.index), others)


def _siblings(settings: Settings, peers: MetricsPeers | None) -> Siblings | None:
    role = settings.worker
    if role is None or peers is None:
        return None
    carried = CarriedCounts(role.run_dir / "metrics-carried.json", role.count)
    return Siblings(role.index, peers.gather, carried)


@dataclass(frozen=True)
class OperatorServices:
    """What `tokenroute admin` works with on the database file."""

    accounts: AccountService
    identity: IdentityService
    device_flow: DeviceFlowService
    payments: PaymentService
    admin: AdminService
    retention: RetentionService


def _device_flow(store: Store, settings: Settings, identity: IdentityService) -> DeviceFlowService:
    return DeviceFlowService(
        store, settings.identity, identity.own, lambda: identity.base_url, identity.codes
    )


async def with_operator(
    settings: Settings, operation: Callable[[OperatorServices], Awaitable[T]]
) -> T:
    """Run `operation` with the account services on the database file, without serving.

    Its exception, if any, comes out as itself (not wrapped in a nursery's group).
    """
    await trio.to_thread.run_sync(migrate_database, settings)
    store = Store(
        settings.db_path,
        database_url=settings.scale.database_url,
        wal_autocheckpoint=settings.wal_autocheckpoint,
    )
    accounts = AccountService(store, settings, KeyAuth(store, settings.key_cache_seconds))
    documents = DocumentFetcher()
    identity = IdentityService(store, settings, fetch_json=documents.get_json)
    payments = PaymentService(store, settings, lambda: identity.base_url)
    operator = OperatorServices(
        accounts,
        identity,
        _device_flow(store, settings, identity),
        payments,
        AdminService(accounts, store, settings),
        RetentionService(store, settings),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        try:
            await identity.start()
            result = await outcome.acapture(operation, operator)
        finally:
            await documents.aclose()
            await payments.aclose()
            store.close()
    return result.unwrap()  # type: ignore[no-any-return]
