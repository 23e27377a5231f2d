"""The gateway's error tree: each error knows its HTTP status and its wire `type`.

Errors are values: status and type come from the class (or, for `HTTPProblem`, the
constructor) and nothing changes them after they are raised; extra headers are given
when one is made. Each error also says whose fault it is (`Fault`): only an upstream's
own failures may change what other requests get (its cooldown), and the text of an
upstream's account problems is kept for the operator (`detail`), away from tenants.
Surfaces render errors in their wire format (OpenAI's envelope on `/v1`, see
`proxy.http.openai_wire`).

GatewayError
 ├── BadRequest              400 invalid_request_error
 ├── AuthenticationFailed    401 authentication_error
 ├── InsufficientQuota       402 insufficient_quota
 ├── PermissionDenied        403 permission_error
 ├── NotFound                404 invalid_request_error
 ├── MethodNotAllowed        405 invalid_request_error
 ├── Conflict                409 invalid_request_error
 ├── PayloadTooLarge         413 invalid_request_error
 ├── RateLimited             429 rate_limit_error
 ├── HTTPProblem             any 4xx the web framework found, invalid_request_error
 ├── OAuthError              400 (401 for a bad client): RFC 6749's `error` code
 ├── InternalError           500 server_error
 ├── ServiceUnavailable      503 service_unavailable (the gateway itself, for now)
 └── UpstreamError           502 upstream_error
      ├── UpstreamUnavailable 503 service_unavailable
      └── UpstreamTimeout     504 timeout_error
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar


class ConfigError(Exception):
    """A bad setting; the message is one line that names it."""


class Fault(enum.Enum):
    """Whose failure an error is, which decides what it may change beyond its own request."""

    REQUEST = "request"  # the client's request: nothing shared changes
    UPSTREAM = "upstream"  # the upstream failed, timed out or is busy: it counts against its health
    ACCOUNT = "account"  # the gateway's own account or key at the provider: tenants see no detail
    GATEWAY = "gateway"  # our own limits or shutdown: the next model may serve; no one is blamed


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_fault: ClassVar[Fault] = Fault.REQUEST

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        upstream_status: int | None = None,
        fault: Fault | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message  # what the client sees
        self.param = param
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))
        # the upstream's HTTP status when it answered with an error
        self.upstream_status = upstream_status
        self.fault = fault or self.default_fault
        # the upstream's own words, for the operator's log and pages, never for a tenant
        self.detail = detail


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"


class InsufficientQuota(GatewayError):
    status = 402
    type = "insufficient_quota"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"

    def __init__(self, method: str, path: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"{method} is not allowed on {path}; use {' or '.join(allowed)}",
            headers={"allow": ", ".join(allowed)},
        )


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"


class HTTPProblem(GatewayError):
    """Another client error found by the web framework; its status is given."""

    type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]  # set once, at construction


class OAuthError(GatewayError):
    """A refusal of the OAuth endpoints, rendered as RFC 6749 says:
    `{"error": code, "error_description": message}`."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status  # type: ignore[misc]  # set once, at construction


class InternalError(GatewayError):
    status = 500
    type = "server_error"


class ServiceUnavailable(GatewayError):
    """The gateway cannot take this request right now (busy, or its database is failing)."""

    status = 503
    type = "service_unavailable"
    default_fault = Fault.GATEWAY


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_fault = Fault.UPSTREAM


class UpstreamUnavailable(UpstreamError):
    status = 503
    type = "service_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
