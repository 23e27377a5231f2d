"""`/openapi.json` (and `/docs`, a viewer for it), generated from the routes by quart-schema.

What each route takes and gives is declared here, in one table, rather than on the
handlers; `tests/test_openapi.py` fails when a route of `/v1`, `/api/v1` or `/oauth`
is missing from it. The hot chat route is served by the edge, not by Quart, so it is
added to the generated document by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, RootModel
from quart_schema import (
    APIKeySecurityScheme,
    DataSource,
    HttpSecurityScheme,
    OpenAPIProvider,
    QuartSchema,
    document_querystring,
    document_request,
    document_response,
    hide,
    security_scheme,
)
from quart_trio import QuartTrio

from . import api_schema as s

BEARER = [{"bearer": []}]
SECRET = [{"internalSecret": []}]
PUBLIC: list[dict[str, list[str]]] = []
ERRORS = (400, 401, 404, 429, 503)
MANAGE = (400, 401, 403, 404)  # key management: 403 for an API key instead of a login
CREATE = (400, 401, 404, 409)


class KeyList(RootModel[list[s.Key]]):
    """A user's keys."""


class LedgerRows(RootModel[list[s.LedgerRow]]):
    """A key's ledger, newest first."""


class AuditRows(RootModel[list[s.AuditRow]]):
    """Audit log rows, newest first."""


class PaymentList(RootModel[list[s.Payment]]):
    """Top-ups, newest first."""


class Document(RootModel[dict[str, Any]]):
    """A JSON object (discovery documents, key sets, explanations)."""


class Empty(BaseModel):
    """An answer whose body carries nothing to read."""


class MetricsText(RootModel[str]):
    """The counters, histograms and gauges in Prometheus' text format."""


@dataclass(frozen=True)
class Doc:
    response: Any = Document
    status: int = 200
    request: Any = None
    form: bool = False
    query: Any = None
    security: list[dict[str, list[str]]] | None = None
    errors: tuple[int, ...] = ERRORS
    error: Any = s.Error


OAUTH = {"error": s.OAuthErrorBody, "errors": (400, 401)}
ROUTES: dict[str, Doc] = {
    "health.healthz": Doc(errors=()),
    "health.readyz": Doc(errors=(503,), error=Document),
    "v1.list_models": Doc(s.ModelList, security=BEARER),
    "v1.get_model": Doc(s.ModelEntry, security=BEARER),
    "v1.embeddings": Doc(s.EmbeddingList, request=s.EmbeddingRequestBody, security=BEARER,
                         errors=(400, 401, 402, 404, 413, 429, 502, 503, 504)),
    "auto.explain": Doc(request=s.ChatRequestBody, security=BEARER),
    "oauth.device_code": Doc(s.DeviceCode, request=s.DeviceCodeRequest, form=True, **OAUTH),
    "oauth.token": Doc(s.Tokens, request=s.TokenRequest, form=True, **OAUTH),
    "oauth.revoke": Doc(Empty, request=s.RevokeRequest, form=True, **OAUTH),
    "oauth.jwks": Doc(errors=(404,)),
    "oauth.openid_configuration": Doc(errors=()),
    "oauth.authorization_server": Doc(errors=(404,)),
    "oauth.register": Doc(s.RegisteredClient, 201, s.ClientRegistration, security=PUBLIC, **OAUTH),
    "oauth.discovery": Doc(s.Discovery, errors=()),
    "mcp.protected_resource": Doc(s.ProtectedResource, security=PUBLIC, errors=()),
    "api.me": Doc(s.Me, security=BEARER),
    "api.balance": Doc(s.Balance, security=BEARER),
    "api.list_keys": Doc(KeyList, security=BEARER, errors=(401, 403)),
    "api.create_key": Doc(s.NewKey, 201, s.NewKeyRequest, security=BEARER, errors=MANAGE),
    "api.revoke_key": Doc(s.Key, security=BEARER, errors=(401, 403, 404)),
    "api.transfer": Doc(s.Transfer, request=s.TransferRequest, security=BEARER, errors=MANAGE),
    "api.usage": Doc(s.Usage, query=s.UsageQuery, security=BEARER, errors=(400, 401, 403)),
    "api.generation": Doc(s.Generation, query=s.GenerationQuery, security=BEARER),
    "api.topup": Doc(s.Checkout, request=s.TopupRequest, security=BEARER, errors=(400, 401, 503)),
    "api.my_payments": Doc(PaymentList, security=BEARER, errors=(401,)),
    "api.stripe_webhook": Doc(Document, security=PUBLIC, errors=(400, 503)),
    "admin_api.find_user": Doc(s.User, query=s.UserQuery, security=SECRET),
    "admin_api.create_user": Doc(s.User, 201, s.NewUserRequest, security=SECRET, errors=CREATE),
    "admin_api.get_user": Doc(s.User, security=SECRET),
    "admin_api.disable": Doc(s.User, security=SECRET),
    "admin_api.enable": Doc(s.User, security=SECRET),
    "admin_api.create_key": Doc(s.NewKey, 201, s.AdminKeyRequest, security=SECRET),
    "admin_api.credit": Doc(s.Credit, request=s.CreditRequest, security=SECRET),
    "admin_api.ledger": Doc(LedgerRows, query=s.LimitQuery, security=SECRET),
    "admin_api.usage": Doc(s.Usage, query=s.AdminUsageQuery, security=SECRET),
    "admin_api.audit": Doc(AuditRows, query=s.LimitQuery, security=SECRET),
    "metrics.metrics": Doc(MetricsText, security=SECRET, errors=(401, 404)),
}  # fmt: skip
# The sign-in page (HTML for people) and the text for language models: not an API.
HIDDEN_BLUEPRINTS = ("device", "authorize", "llms", "payment_pages")


class GatewayOpenAPI(OpenAPIProvider):
    """Adds the routes the edge serves itself (no Quart view to document)."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        components = document["components"]["schemas"]
        openai_error = _model_schema(s.Error, components)
        anthropic_error = _model_schema(s.AnthropicError, components)
        paths = document["paths"]
        scrape = paths["/metrics"]["get"]["responses"][200]  # text, not the model's JSON
        scrape["content"] = {"text/plain": {"schema": {"type": "string"}}}
        paths["/v1/chat/completions"] = _post(
            "A chat completion (OpenAI's API); `stream: true` for SSE",
            "post_chat_completions",
            _model_schema(s.ChatRequestBody, components),
            _model_schema(s.ChatCompletion, components),
            openai_error,
            stream=True,
        )
        paths["/v1/messages"] = _post(
            "A message (Anthropic's Messages API; key in `x-api-key` or as Bearer); "
            "`stream: true` for Anthropic's events",
            "post_messages",
            _model_schema(s.MessagesRequestBody, components),
            _model_schema(s.Message, components),
            anthropic_error,
            stream=True,
        )
        paths["/v1/messages/count_tokens"] = _post(
            "The input tokens of a Messages request (Anthropic's count for its models, "
            "else an estimate); free",
            "post_messages_count_tokens",
            {"type": "object", "additionalProperties": True},
            _model_schema(s.TokenCount, components),
            anthropic_error,
            stream=False,
        )
        return document


def _post(
    summary: str,
    operation: str,
    request: dict[str, Any],
    response: dict[str, Any],
    error: dict[str, Any],
    *,
    stream: bool,
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": response}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    errors = {
        str(code): {"description": "an error", "content": {"application/json": {"schema": error}}}
        for code in (400, 401, 402, 404, 413, 429, 502, 503, 504)
    }
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "security": BEARER,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": {"description": "the answer", "content": content}, **errors},
        }
    }


def install_openapi(app: QuartTrio, version: str) -> None:
    """Document every route (call after the blueprints are registered)."""
    for endpoint, view in app.view_functions.items():
        doc = ROUTES.get(endpoint)
        if doc is None:
            if endpoint.split(".")[0] in HIDDEN_BLUEPRINTS:
                hide(view)
            continue
        if doc.request is not None:
            source = DataSource.FORM if doc.form else DataSource.JSON
            document_request(doc.request, source=source)(view)
        if doc.query is not None:
            document_querystring(doc.query)(view)
        document_response(doc.response, doc.status)(view)
        for code in doc.errors:
            document_response(doc.error, code)(view)
        if doc.security is not None:
            security_scheme(doc.security)(view)
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "tokenroute", "version": version,
              "description": "OpenAI-compatible LLM gateway: /v1 for apps, /api/v1 for "
                             "accounts, keys, balance and usage."},
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT or sk-tr key"),
            "internalSecret": APIKeySecurityScheme(name="X-Internal-Secret", in_="header"),
        },
        openapi_provider_class=GatewayOpenAPI,
    )  # fmt: skip


def _model_schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A reference to `model`, its schema (and those it uses) added to the components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
