"""The shapes `/openapi.json` documents: every `/v1`, `/api/v1` and `/oauth` body.

The handlers read and check bodies themselves (a bad field is a 400 in the envelope
that names it); these models only describe the wire. Money is a USD string, times
ISO 8601 UTC.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

USD = Field(pattern=r"^-?\d+(\.\d+)?$", examples=["5.00"])


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int
    param: str | None = None


class Error(BaseModel):
    error: ErrorBody


class OAuthErrorBody(BaseModel):
    error: str = Field(examples=["authorization_pending"])
    error_description: str


class Me(BaseModel):
    id: str
    display_name: str
    email: str
    logto_sub: str
    balance_usd: str
    status: str


class Balance(BaseModel):
    balance_usd: str
    currency: str = "USD"


class Key(BaseModel):
    id: str
    name: str
    key_prefix: str
    balance_usd: str
    status: str
    created_at: str | None
    last_used_at: str | None


class NewKey(Key):
    raw: str = Field(description="the key itself: shown this once, never again")


class NewKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    credit_usd: str | None = Field(default=None, description="moved from `from_key`")
    from_key: str | None = None


class TransferRequest(BaseModel):
    to_key: str = Field(min_length=1, max_length=200)
    amount_usd: str = USD


class Transfer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    amount_usd: str
    from_: Key = Field(alias="from")
    to: Key


class UsageQuery(BaseModel):
    days: int = Field(default=30, ge=1, le=365)
    key: str | None = None


class UsageShare(BaseModel):
    model_config = ConfigDict(extra="allow")  # model, key_id and name, or date
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: str


class Usage(BaseModel):
    range_days: int
    total_requests: int
    total_tokens_in: int
    total_tokens_out: int
    total_cost_usd: str
    by_model: list[UsageShare]
    by_key: list[UsageShare]
    by_day: list[UsageShare]


class GenerationQuery(BaseModel):
    id: str = Field(min_length=1, description="the request id (the x-request-id header)")


class Generation(BaseModel):
    id: str
    key_id: str | None
    model: str
    served_model: str | None
    provider: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: str
    latency_ms: int | None
    ttft_ms: int | None
    fallbacks: int
    status: int
    stream: bool
    created_at: str | None


class TopupRequest(BaseModel):
    amount_usd: str = USD
    key: str | None = None


class Checkout(BaseModel):
    checkout_url: str = Field(description="for a person to open and pay; agents never pay")
    session_id: str
    amount_usd: str
    expires_at: int | None
    credit_usd: str = Field(description="what the key gets: the amount less the fee")
    key_id: str
    payment_id: str


class Payment(BaseModel):
    id: str
    key_id: str
    amount_usd: str
    credit_usd: str
    status: str
    session_id: str | None
    checkout_url: str | None
    clawed_back_usd: str
    owed_usd: str
    created_at: str | None
    credited_at: str | None


class Discovery(BaseModel):
    issuer: str
    client_id: str
    device_authorization_endpoint: str
    token_endpoint: str
    scopes: list[str]
    resource: str


class DeviceCodeRequest(BaseModel):
    client_id: str
    scope: str | None = None


class DeviceCode(BaseModel):
    device_code: str
    user_code: str = Field(examples=["BCDF-GHJK"])
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class TokenRequest(BaseModel):
    grant_type: str = Field(
        examples=["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]
    )
    client_id: str
    device_code: str | None = None
    refresh_token: str | None = None


class Tokens(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    scope: str


class RevokeRequest(BaseModel):
    token: str


class User(BaseModel):
    id: str
    email: str
    display_name: str
    is_admin: bool
    status: str
    logto_sub: str
    created_at: str | None


class UserQuery(BaseModel):
    email: str


class NewUserRequest(BaseModel):
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    admin: bool = False


class AdminKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    credit_usd: str | None = None


class CreditRequest(BaseModel):
    amount_usd: str = Field(description="above 0: a grant; below 0: an adjustment")
    note: str | None = Field(default=None, max_length=200)


class Credit(BaseModel):
    key_id: str
    kind: str
    amount_usd: str
    balance_usd: str


class LedgerRow(BaseModel):
    id: int
    kind: str
    amount_usd: str
    reference: str | None
    actor: str | None
    note: str | None
    created_at: str | None


class LimitQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=1000)


class AdminUsageQuery(BaseModel):
    days: int = Field(default=30, ge=1, le=365)
    user: str | None = None
    key: str | None = None


class AuditRow(BaseModel):
    id: int
    actor: str
    action: str
    target: str | None
    detail: str | None
    address: str | None
    created_at: str | None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Any = None


class ChatRequestBody(BaseModel):
    """OpenAI's chat completion request; fields not listed pass to the upstream."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(examples=["openai/gpt-4o-mini", "tokenroute/auto"])
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None


class ChatCompletion(BaseModel):
    """OpenAI's `chat.completion`; `usage.cost` is what the request was billed (USD)."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: str
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any]


class EmbeddingRequestBody(BaseModel):
    """OpenAI's embeddings request; fields not listed pass to OpenAI-compatible upstreams."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(examples=["openai/text-embedding-3-small"])
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string, up to 2048 strings, token ids, or up to 2048 token arrays"
    )
    dimensions: int | None = Field(default=None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"


class EmbeddingList(BaseModel):
    """OpenAI's `list` of embeddings; `usage.cost` is what the request was billed (USD)."""

    model_config = ConfigDict(extra="allow")
    object: str
    data: list[dict[str, Any]]
    model: str
    usage: dict[str, Any]


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: str
    owned_by: str


class ModelList(BaseModel):
    object: str
    data: list[ModelEntry]


class MessagesRequestBody(BaseModel):
    """Anthropic's Messages request; to an Anthropic model it goes up unchanged."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(examples=["claude-haiku-4-5", "openai/gpt-4o-mini", "tokenroute/auto"])
    max_tokens: int = Field(ge=1)
    messages: list[ChatMessage] = Field(min_length=1)
    system: Any = None
    stream: bool = False


class Message(BaseModel):
    """Anthropic's Message."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: str = Field(examples=["message"])
    role: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]


class TokenCount(BaseModel):
    input_tokens: int


class AnthropicErrorBody(BaseModel):
    type: str = Field(examples=["billing_error"])
    message: str


class AnthropicError(BaseModel):
    type: str = Field(examples=["error"])
    error: AnthropicErrorBody
    request_id: str | None = None


class ProtectedResource(BaseModel):
    """RFC 9728 metadata of the MCP endpoint: where its bearer tokens come from."""

    resource: str = Field(examples=["https://gateway.example.com/mcp"])
    authorization_servers: list[str]
    bearer_methods_supported: list[str]
    scopes_supported: list[str]
    resource_name: str
    resource_documentation: str


class ClientRegistration(BaseModel):
    """RFC 7591 client metadata: a public client (no secret) with exact redirect URIs."""

    model_config = ConfigDict(extra="allow")
    redirect_uris: list[str] = Field(examples=[["http://127.0.0.1:33418/callback"]])
    client_name: str | None = None
    token_endpoint_auth_method: str = "none"
    grant_types: list[str] = ["authorization_code", "refresh_token"]


class RegisteredClient(BaseModel):
    client_id: str
    client_id_issued_at: int
    client_name: str
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
