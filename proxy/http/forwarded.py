"""The client's address and scheme as the reverse proxy in front of the gateway saw them.

Behind Caddy every connection comes from 127.0.0.1. The throttles keyed by address
(sign-ins, device-code guesses, client registrations) would then count everyone together,
and one stranger's failed sign-ins would lock every person out; the audit log would name
the proxy. With `proxy_hops` = N, each of the N proxies appends the address it saw to
X-Forwarded-For, so the Nth entry from the end is the client's; whatever a client wrote
there itself sits further left and is ignored. X-Forwarded-Proto gives the scheme the
same way (https behind a TLS proxy: cookies and URLs are built for it).
"""

from __future__ import annotations

from typing import Any


class Forwarded:
    """Rewrites `client` and `scheme` in the ASGI scope from the trusted proxies' headers."""

    def __init__(self, app: Any, hops: int) -> None:
        self.app = app
        self.hops = hops

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" or scope["type"] == "websocket":
            client = self._trusted(scope["headers"], b"x-forwarded-for")
            scheme = self._trusted(scope["headers"], b"x-forwarded-proto")
            if client is not None or scheme is not None:
                scope = dict(scope)  # the server's scope stays as it was
                if client is not None:
                    scope["client"] = (client, 0)
                if scheme in ("http", "https"):
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)

    def _trusted(self, headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
        """The entry the nearest trusted proxy vouches for; None when there are too few."""
        values: list[str] = []
        for key, value in headers:
            if key == name:  # ASGI servers lower-case header names
                values.extend(part.strip() for part in value.decode("latin-1").split(","))
        if len(values) < self.hops:
            return None
        return values[-self.hops] or None
