"""The operations every surface shares: chat, accounts, status.

Surfaces (the HTTP handlers, the CLI, the admin pages, MCP tools) import this
package and `proxy.core`, never the store, the upstream relay or the money
internals: every rule lives here once.
"""

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
from .embeddings import EmbeddingCall, EmbeddingReply, EmbeddingService
from .factory import (
    OperatorServices,
    Services,
    build_services,
    migrate_database,
    pending_database_migrations,
    with_operator,
)
from .identity import IdentityService
from .payments import PaymentService
from .processes import reclaim_worker, startup_reclaim
from .reports import ReportService, settings_table
from .status import StatusService

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
