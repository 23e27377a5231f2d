"""Talking to a gateway over HTTP, with the standard library only (the CLI starts fast).

Every failure becomes a `UserFacingError` with the documented exit code: 1 for a 4xx
(the gateway's own message), 2 when the gateway cannot be reached (with the URL tried),
3 for a 5xx.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .output import EXIT_NETWORK, EXIT_SERVER, EXIT_USER, UserFacingError

TIMEOUT = 30.0
USER_AGENT = "tokenroute-cli"


class HTTPFailure(UserFacingError):
    """A 4xx or 5xx answer: its status and body are kept for callers that look closer."""

    def __init__(self, message: str, code: int, status: int, body: Any) -> None:
        super().__init__(message, code)
        self.status = status
        self.body = body


def request(
    method: str,
    url: str,
    *,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    bearer: str | None = None,
    timeout: float = TIMEOUT,
    headers_out: dict[str, str] | None = None,
) -> Any:
    """The decoded JSON answer (None for an empty one); its headers into `headers_out`."""
    headers = {"accept": "application/json", "user-agent": USER_AGENT}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["content-type"] = "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["content-type"] = "application/x-www-form-urlencoded"
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as answer:
            if headers_out is not None:
                headers_out.update({k.lower(): v for k, v in answer.headers.items()})
            return _decode(answer.read())
    except urllib.error.HTTPError as exc:
        body = _decode(exc.read(), lenient=True)
        code = EXIT_SERVER if exc.code >= 500 else EXIT_USER
        raise HTTPFailure(_message(exc.code, body), code, exc.code, body) from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserFacingError(f"cannot reach {url}: {reason}", EXIT_NETWORK) from exc


def _decode(raw: bytes, lenient: bool = False) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        if lenient:
            return raw.decode("utf-8", "replace")[:500]
        message = "the gateway answered something that is not JSON"
        raise UserFacingError(message, EXIT_SERVER) from exc


def _message(status: int, body: Any) -> str:
    """The gateway's own words: OpenAI's envelope, or RFC 6749's, or the status alone."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return f"{error['message']} (HTTP {status})"
        if isinstance(error, str):
            description = body.get("error_description")
            return f"{error}: {description} (HTTP {status})" if description else error
    return f"the gateway answered HTTP {status}"
