"""The MCP server at `/mcp`: the account behind a token, as tools an agent can call.

Built on the official `mcp` SDK (the only module of ours that imports it): `MCPServer`
declares the tools, its streamable-HTTP app serves them statelessly with JSON answers,
for the initialize-handshake protocol versions and the per-request one alike. The SDK
weighs ~26 MB in every gateway process, so it loads with the first `/mcp` request
(`mcp_server.McpServer`), which also runs its session manager while the app serves.
`McpFront` (`mcp_edge`) has authenticated the request already; a
tool finds its caller in the ASGI scope of the request the SDK hands it.

Each tool does what its `/api/v1` route does, through the same services and JSON
helpers, so the data and the refusals are the same (an `sk-tr` key reads its own
balance and usage and may ask for a top-up; key management needs a login token). A
refusal comes back as an MCP tool error (`isError`) carrying the API's message.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import Field

from ..core.config import Settings
from ..core.errors import AuthenticationFailed, GatewayError
from ..services import Caller, Services
from . import api_wire as wire
from .mcp_edge import CALLER, MCP_PATH
from .openai_wire import models_json

INSTRUCTIONS = (
    "tokenroute is an OpenAI-compatible LLM gateway (its /v1 API takes sk-tr-... keys). "
    "These tools read and manage the account behind your bearer token: who it is, balances, "
    "API keys, usage, the models served and how tokenroute/auto would route a conversation. "
    "Money is USD as strings. Never pay: topup_url gives a checkout URL for your human."
)
DESCRIPTIONS = {  # one line each, written for the model that picks a tool
    "whoami": "Who your token acts for: account id, email, name, status and balance in USD "
    "(an API key's own balance, or the account's total for a login).",
    "balance": "The balance in USD: this API key's own, or the sum over the account's active "
    "keys when you use a login token.",
    "keys_list": "List the account's API keys (id, name, prefix, balance, status, last use); "
    "needs a login token, not an API key.",
    "keys_create": "Create an sk-tr API key for the OpenAI-compatible /v1 API; the raw key is "
    "shown in this result only, so store it now. Needs a login token.",
    "keys_revoke": "Revoke one of the account's API keys by id; it stops working at once and "
    "cannot be restored. Needs a login token.",
    "topup_url": "Get a checkout URL to add credit to a key; it never pays: hand the URL to "
    "your human to pay in a browser.",
    "usage": "Requests, tokens and cost in USD over the last days, by model, key and day "
    "(an API key sees its own usage only).",
    "models": "The models this gateway serves (ids like openai/gpt-4o-mini), with prices in "
    "USD per 1M tokens and context windows.",
    "route_explain": "Which model tokenroute/auto would choose for these chat messages, and "
    "why (tier, score, signals); calls no model and charges nothing.",
}
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
REVOKE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                         open_world_hint=False)  # fmt: skip
CHECKOUT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

Days = Annotated[
    int,
    Field(
        description="how many days back, 1 to 365", json_schema_extra={"minimum": 1, "maximum": 365}
    ),
]
Name = Annotated[str, Field(description="what the key is for, like myapp")]
Credit = Annotated[
    str | None, Field(description='USD moved onto the new key from from_key, like "5.00"')
]
FromKey = Annotated[str | None, Field(description="the id of your key the credit comes from")]
KeyId = Annotated[str, Field(description="a key id (key_...), as keys_list shows")]
OptionalKey = Annotated[str | None, Field(description="a key id of yours; omit for the default")]
Usd = Annotated[str, Field(description='USD as a string, like "5.00"')]
Messages = Annotated[
    list[dict[str, Any]],
    Field(description='OpenAI chat messages, like [{"role": "user", "content": "..."}]'),
]
Tools = Annotated[
    list[dict[str, Any]] | None,
    Field(description="OpenAI tool definitions the request would carry, if any"),
]
Session = Annotated[
    str | None,
    Field(description="x-session-id of the conversation (API keys only: sessions belong to keys)"),
]


@dataclass(frozen=True)
class Reply:
    """What a tool found: the data its `/api/v1` route answers, and a note for the agent."""

    data: Any
    note: str | None = None


ToolFn = Callable[..., Awaitable[Reply]]


@dataclass(frozen=True)
class SdkServer:
    """The SDK's server with our tools: its streamable-HTTP app, and the session manager
    that must run while the app serves (`mcp_server.McpServer` holds it open)."""

    app: Callable[..., Awaitable[None]]
    session_manager: Any


def build(services: Services) -> SdkServer:
    """Declare the tools and build the SDK's app (stateless, JSON answers)."""
    server = MCPServer(
        "tokenroute",
        title="tokenroute",
        instructions=INSTRUCTIONS,
        version=version("tokenroute"),
    )
    add_tools(server, services)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_guard(services.settings),
        max_request_body_size=services.settings.max_body_bytes,  # the edge has read it
    )
    return SdkServer(app, server.session_manager)


def transport_guard(settings: Settings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding guard (421 for another Host): the public URL's host, the
    bound address, and the loopback names when the gateway listens there."""
    port = str(settings.port) if settings.port else "*"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    hosts = [] if settings.host in WILDCARD_HOSTS else [f"{host}:{port}"]
    if settings.host in WILDCARD_HOSTS or host in LOOPBACK:
        hosts += [f"{name}:{port}" for name in LOOPBACK]
    origins = [f"http://{allowed}" for allowed in hosts]
    if settings.public_url:
        public = urlsplit(settings.public_url)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def caller_of(ctx: Context) -> Caller:
    """The caller `McpFront` resolved, from the scope of the request being served."""
    request = ctx.request_context.request
    caller = getattr(request, "scope", {}).get(CALLER)
    if not isinstance(caller, Caller):  # only a request that bypassed the front
        raise AuthenticationFailed("send Authorization: Bearer <login token> or an sk-tr key")
    return caller


def add_tools(server: MCPServer, services: Services) -> None:
    accounts, callers = services.accounts, services.callers
    tool = functools.partial(_tool, server)

    @tool("whoami", READ)
    async def whoami(ctx: Context) -> Reply:
        who = caller_of(ctx)
        return Reply(wire.me_json(who.user, await callers.balance(who)))

    @tool("balance", READ)
    async def balance(ctx: Context) -> Reply:
        return Reply(wire.balance_json(await callers.balance(caller_of(ctx))))

    @tool("keys_list", READ)
    async def keys_list(ctx: Context) -> Reply:
        who = callers.managing(caller_of(ctx))
        keys = await accounts.user_keys(who.user.id)
        return Reply([wire.key_json(key, last_used) for key, last_used in keys])

    @tool("keys_create", WRITE)
    async def keys_create(
        ctx: Context, name: Name, credit_usd: Credit = None, from_key: FromKey = None
    ) -> Reply:
        who = callers.managing(caller_of(ctx))
        fields = _given(name=name, credit_usd=credit_usd, from_key=from_key)
        checked, credit, source = wire.new_key_fields(fields)
        new = await accounts.create_user_key(who.user.id, checked, credit=credit, from_key=source)
        base_url = services.identity.base_url
        return Reply(
            wire.new_key_json(new),
            f"The raw key ({new.record.key_prefix}...) is in `raw` below and is shown only this "
            f"once: store it now. Use it as OPENAI_API_KEY with OPENAI_BASE_URL={base_url}/v1.",
        )

    @tool("keys_revoke", REVOKE)
    async def keys_revoke(ctx: Context, key_id: KeyId) -> Reply:
        who = callers.managing(caller_of(ctx))
        return Reply(wire.key_json(await accounts.revoke_user_key(who.user.id, key_id), None))

    @tool("topup_url", CHECKOUT)
    async def topup_url(ctx: Context, amount_usd: Usd, key: OptionalKey = None) -> Reply:
        who = caller_of(ctx)
        fields = _given(amount_usd=amount_usd, key=key)
        key_id = wire.string(fields, "key") or None
        checkout = await services.payments.topup(
            who.user, fields.get("amount_usd"), key_id=key_id, via=who.key
        )
        return Reply(
            checkout,
            f"Nothing has been paid. Give this URL to your human to open "
            f"and pay in a browser; never pay on their behalf: {checkout['checkout_url']}"
            f" (the key gets ${checkout['credit_usd']} once the payment completes).",
        )

    @tool("usage", READ)
    async def usage(ctx: Context, days: Days = 30, key: OptionalKey = None) -> Reply:
        who = caller_of(ctx)
        checked = wire.days(str(days))
        return Reply(wire.usage_json(checked, await callers.usage(who, checked, key or None)))

    @tool("models", READ)
    async def models(ctx: Context) -> Reply:
        caller_of(ctx)
        return Reply(models_json(services.chat))

    @tool("route_explain", READ)
    async def route_explain(
        ctx: Context, messages: Messages, tools: Tools = None, session_id: Session = None
    ) -> Reply:
        who = caller_of(ctx)
        if who.key is not None:  # counted against the key's rate limit, as on /v1
            await services.chat.admit(who.key)
        body = _given(messages=messages, tools=tools)
        explanation, _ = services.chat.explain(who.key, body, session_id)
        return Reply(explanation)


def _tool(server: MCPServer, name: str, annotations: ToolAnnotations) -> Callable[[ToolFn], ToolFn]:
    """Register `fn` as the tool `name`: its reply as JSON (and structured content when an
    object), a `GatewayError` as a tool error with the API's message."""

    def register(fn: ToolFn) -> ToolFn:
        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> CallToolResult:
            try:
                reply = await fn(*args, **kwargs)
            except GatewayError as error:
                return CallToolResult(content=[_text(error.message)], is_error=True)
            content: list[ContentBlock] = [_text(orjson.dumps(reply.data).decode())]
            if reply.note:
                content.insert(0, _text(reply.note))
            structured = reply.data if isinstance(reply.data, dict) else None
            return CallToolResult(content=content, structured_content=structured)

        description = DESCRIPTIONS[name]
        server.add_tool(
            call,
            name=name,
            description=description,
            annotations=annotations,
            structured_output=False,
        )
        return fn

    return register


def _given(**fields: Any) -> dict[str, Any]:
    """The arguments the agent gave, as the body the `/api/v1` route would have read."""
    return {name: value for name, value in fields.items() if value is not None}


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)
