"""Small JSON documents fetched over HTTP: an external login issuer's discovery and keys.

One client, made when the services start (making one blocks the loop for a while),
without redirects, with short timeouts and a size cap: a slow or huge answer from the
issuer cannot hold a request for long or fill memory.
"""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import orjson

TIMEOUT = 10.0
MAX_BYTES = 1024 * 1024


class DocumentFetcher:
    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def open(self) -> None:
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_json(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`; `OSError` or `ValueError` saying what went wrong."""
        if self._client is None:
            self.open()
        assert self._client is not None
        try:
            async with self._client.stream(
                "GET", url, headers={"accept": "application/json"}
            ) as reply:
                if reply.status_code != 200:
                    raise ValueError(f"HTTP {reply.status_code}")
                body = bytearray()
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise ValueError(f"the document is over {MAX_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise OSError(f"cannot fetch it: {exc!r}") from exc
        document = orjson.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the document is not a JSON object")
        return document
