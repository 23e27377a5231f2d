"""The operations every surface shares: chat, accounts, status.

Surfaces (the HTTP handlers, the CLI, the admin pages, MCP tools) import this
package and `proxy.core`, never the store, the upstream relay or the money
internals: every rule lives here once.

The names load lazily (PEP 562): `from proxy.services import X` imports only the module
that defines X, so the worker supervisor and the CLI's light commands do not pay for the
whole gateway (the supervisor's RSS counts against every deployment's memory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..access.shared_state import SharedState
    from ..core.chat import Chunks, StreamDone, StreamEvent, StreamFailed
    from ..providers.anthropic_in import stop_reason
    from ..store import KeyRecord, Migration, UsageRecord, UserRecord
    from ..store.reports import UsageFilter
    from .accounts import AccountService, BooksCheck, Credit, NewKey
    from .admin import AdminService
    from .authorization import AuthorizationRequest, AuthorizationService, Redirect
    from .callers import Caller, Callers
    from .chat import ChatCall, ChatReply, ChatService
    from .chat_stream import ChatStream, OpenChatStream
    from .database import migrate_database, pending_database_migrations
    from .embeddings import EmbeddingCall, EmbeddingReply, EmbeddingService
    from .factory import OperatorServices, Services, build_services, with_operator
    from .identity import IdentityService
    from .payments import PaymentService
    from .processes import reclaim_worker, startup_reclaim
    from .reports import ReportService, settings_table
    from .status import StatusService

_HOMES = {
    "AccountService": ".accounts",
    "AdminService": ".admin",
    "AuthorizationRequest": ".authorization",
    "AuthorizationService": ".authorization",
    "BooksCheck": ".accounts",
    "Caller": ".callers",
    "Callers": ".callers",
    "ChatCall": ".chat",
    "ChatReply": ".chat",
    "ChatService": ".chat",
    "ChatStream": ".chat_stream",
    "Chunks": "..core.chat",
    "Credit": ".accounts",
    "EmbeddingCall": ".embeddings",
    "EmbeddingReply": ".embeddings",
    "EmbeddingService": ".embeddings",
    "IdentityService": ".identity",
    "KeyRecord": "..store",
    "Migration": "..store",
    "NewKey": ".accounts",
    "OpenChatStream": ".chat_stream",
    "OperatorServices": ".factory",
    "PaymentService": ".payments",
    "Redirect": ".authorization",
    "ReportService": ".reports",
    "Services": ".factory",
    "SharedState": "..access.shared_state",
    "StatusService": ".status",
    "StreamDone": "..core.chat",
    "StreamEvent": "..core.chat",
    "StreamFailed": "..core.chat",
    "UsageFilter": "..store.reports",
    "UsageRecord": "..store",
    "UserRecord": "..store",
    "build_services": ".factory",
    "migrate_database": ".database",
    "pending_database_migrations": ".database",
    "reclaim_worker": ".processes",
    "settings_table": ".reports",
    "startup_reclaim": ".processes",
    "stop_reason": "..providers.anthropic_in",
    "with_operator": ".factory",
}

__all__ = [
    "AccountService",
    "AdminService",
    "AuthorizationRequest",
    "AuthorizationService",
    "BooksCheck",
    "Caller",
    "Callers",
    "ChatCall",
    "ChatReply",
    "ChatService",
    "ChatStream",
    "Chunks",
    "Credit",
    "EmbeddingCall",
    "EmbeddingReply",
    "EmbeddingService",
    "IdentityService",
    "KeyRecord",
    "Migration",
    "NewKey",
    "OpenChatStream",
    "OperatorServices",
    "PaymentService",
    "Redirect",
    "ReportService",
    "Services",
    "SharedState",
    "StatusService",
    "StreamDone",
    "StreamEvent",
    "StreamFailed",
    "UsageFilter",
    "UsageRecord",
    "UserRecord",
    "build_services",
    "migrate_database",
    "pending_database_migrations",
    "reclaim_worker",
    "settings_table",
    "startup_reclaim",
    "stop_reason",
    "with_operator",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return __all__
