"""The gateway's error tree and OpenAI's error envelope.

Every error a `/v1` client can see is a `GatewayError`; the edge renders it with
`envelope()` as `{"error": {"message", "type", "code"}}`, `code` being the HTTP
status as the seeds' table shows.

GatewayError
 ├── BadRequest              400 invalid_request_error
 ├── AuthenticationFailed    401 authentication_error
 ├── InsufficientQuota       402 insufficient_quota
 ├── PermissionDenied        403 permission_error
 ├── NotFound                404 invalid_request_error
 ├── PayloadTooLarge         413 invalid_request_error
 ├── RateLimited             429 rate_limit_error
 ├── InternalError           500 server_error
 └── UpstreamError           502 upstream_error
      ├── UpstreamUnavailable 503 service_unavailable
      └── UpstreamTimeout     504 timeout_error
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson


class ConfigError(Exception):
    """A bad setting; the message is one line that names it."""


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})
        # set when an upstream answered with an HTTP error (routing reads it)
        self.upstream_status: int | None = None
        # the upstreams tried before this error was given up on (usage rows record them)
        self.attempts: list[dict[str, object]] = []


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


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"


class InternalError(GatewayError):
    status = 500
    type = "server_error"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    status = 503
    type = "service_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"


def error_body(error: GatewayError) -> dict[str, object]:
    body: dict[str, object] = {"message": error.message, "type": error.type, "code": error.status}
    if error.param is not None:
        body["param"] = error.param
    return {"error": body}


def envelope(error: GatewayError) -> bytes:
    return orjson.dumps(error_body(error))
