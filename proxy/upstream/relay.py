"""Sending requests to upstreams: small connection pools per provider, errors mapped.

Each provider gets a few small `httpx2` clients used round-robin rather than one
big pool: httpcore scans every connection of a pool on each acquire and
release, which collapses at high concurrency (see ARCHITECTURE.md). Clients are
built once at start-up. A request is sent again only if it provably never reached
the upstream (see `_Progress`).
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import Mapping
from typing import Any

import httpx2 as httpx

from ..core.chat import ChatRequest
from ..core.config import ProviderSettings
from ..core.embeddings import EmbeddingRequest, EmbeddingResult
from ..core.errors import Fault, GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ..core.model import Model
from ..providers.anthropic import AnthropicAdapter
from ..providers.base import Adapter, Completion, UpstreamRequest, load_object
from ..providers.embeddings import EmbeddingAdapter
from .stream import StreamCutter, UpstreamStream, why

CONNECTIONS_PER_SHARD = 64  # keeps httpcore's per-acquire scan of a pool short
_BROKEN_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class _Progress:
    """How far a request got on its connection (httpcore's `trace` extension).

    A POST is sent again only when it provably never reached the upstream: on a reused
    connection that broke before the request's headers were all written, the upstream
    cannot have read a request, let alone started generating (and billing) an answer.
    """

    __slots__ = ("headers_sent", "new_connection")

    def __init__(self) -> None:
        self.headers_sent = False
        self.new_connection = False

    async def __call__(self, event: str, info: object) -> None:
        if event == "http11.send_request_headers.complete":
            self.headers_sent = True
        elif event == "connection.connect_tcp.started":
            self.new_connection = True

    @property
    def resendable(self) -> bool:
        return not self.headers_sent and not self.new_connection


class UpstreamPool:
    """Round-robin over small connection pools for one provider (`pool_shards`, 0 = one per 64).

    Requests go straight to httpx transports: the gateway needs none of the client
    layer (auth, redirects, cookies, URL merging), which costs as much CPU as the
    connection handling itself.
    """

    def __init__(self, provider: ProviderSettings) -> None:
        self.provider = provider
        self._transports: list[httpx.AsyncHTTPTransport] = []
        self._next = itertools.count()
        self.timeout = {
            "connect": provider.connect_timeout,
            "read": provider.first_byte_timeout,
            "write": 60.0,
            "pool": 60.0,
        }
        self._urls: dict[str, httpx.URL] = {}

    def open(self, ssl_context: ssl.SSLContext) -> None:
        p = self.provider
        shards = p.pool_shards or max(1, p.max_connections // CONNECTIONS_PER_SHARD)
        per_shard = max(1, p.max_connections // shards)
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=60
        )
        self._transports = [
            # one SSL context for all: building one costs ~30 ms
            httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits, trust_env=False)
            for _ in range(shards)
        ]

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()

    def url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self.provider.base_url + path)
        return url

    async def send(self, request: httpx.Request) -> httpx.Response:
        transports = self._transports
        transport = transports[next(self._next) % len(transports)]
        response = await transport.handle_async_request(request)
        response.request = request
        return response


class Relay:
    def __init__(self, providers: Mapping[str, ProviderSettings], adapters: Mapping[str, Adapter]):
        self._providers = dict(providers)
        self._adapters = dict(adapters)
        self._pools: dict[str, UpstreamPool] = {}
        self.cutter = StreamCutter()

    def open(self) -> None:
        ssl_context = httpx.create_ssl_context()
        for name, provider in self._providers.items():
            pool = UpstreamPool(provider)
            pool.open(ssl_context)
            self._pools[name] = pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    async def complete(self, chat: ChatRequest, model: Model) -> Completion:
        adapter = self._adapters[model.provider]
        response = await self._send(model, adapter.chat_request(chat, model, self._key(model)))
        body = await self._whole_body(model, response)
        if response.status_code >= 400:
            raise self._error(model, adapter, response, body)
        return adapter.chat_response(body, model)

    async def open_stream(self, chat: ChatRequest, model: Model) -> UpstreamStream:
        """The upstream's stream once its response started; the caller closes it."""
        adapter = self._adapters[model.provider]
        response = await self._send(model, adapter.chat_request(chat, model, self._key(model)))
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            raise self._error(model, adapter, response, body)
        provider = self._providers[model.provider]
        translator = adapter.chat_stream(chat, model)
        return UpstreamStream(response, translator, provider.idle_timeout, self.cutter)

    async def count_tokens(self, chat: ChatRequest, model: Model) -> Any:
        """Anthropic's own count of a Messages request's input tokens (free upstream)."""
        adapter = self._adapters[model.provider]
        if chat.native is None or not isinstance(adapter, AnthropicAdapter):
            raise UpstreamError(f"{model.provider} does not count tokens", fault=Fault.GATEWAY)
        upstream = adapter.count_tokens_request(
            chat.native, chat.native_headers, model, self._key(model)
        )
        response = await self._send(model, upstream)
        body = await self._whole_body(model, response)
        if response.status_code >= 400:
            raise self._error(model, adapter, response, body)
        return load_object(body, model.provider)

    def _key(self, model: Model) -> str | None:
        return self._providers[model.provider].api_key

    async def _send(self, model: Model, upstream: UpstreamRequest) -> httpx.Response:
        pool = self._pools[model.provider]
        for attempt in (1, 2):
            progress = _Progress()
            request = httpx.Request(
                "POST",
                pool.url(upstream.path),
                content=upstream.body,
                headers=upstream.headers,
                extensions={"timeout": pool.timeout, "trace": progress},
            )
            try:
                return await pool.send(request)
            except _BROKEN_CONNECTION as exc:
                if attempt == 2 or not progress.resendable:
                    raise UpstreamError(f"{model.provider} connection failed: {why(exc)}") from exc
            except httpx.PoolTimeout as exc:
                raise UpstreamUnavailable(
                    f"too many requests in flight to {model.provider}; try again shortly",
                    fault=Fault.GATEWAY,
                ) from exc
            except httpx.ConnectTimeout as exc:
                raise UpstreamTimeout(
                    f"{model.provider} did not accept a connection within "
                    f"{pool.provider.connect_timeout:g} s"
                ) from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(
                    f"{model.provider} sent no first byte within "
                    f"{pool.provider.first_byte_timeout:g} s"
                ) from exc
            except httpx.ConnectError as exc:
                raise UpstreamError(f"cannot connect to {model.provider}: {why(exc)}") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{model.provider} request failed: {why(exc)}") from exc
        raise AssertionError("unreachable")

    def _error(
        self, model: Model, adapter: Adapter, response: httpx.Response, body: bytes
    ) -> GatewayError:
        return adapter.error(response.status_code, body, response.headers.get("retry-after"))

    async def embed(
        self, adapter: EmbeddingAdapter, request: EmbeddingRequest, model: Model
    ) -> EmbeddingResult:
        """An embeddings call, not streamed. An adapter that splits the request gets its calls
        sent one after the other; the first that fails ends the attempt."""
        bodies = []
        for upstream in adapter.embeddings_requests(request, model, self._key(model)):
            response = await self._send(model, upstream)
            body = await self._whole_body(model, response)
            if response.status_code >= 400:
                retry_after = response.headers.get("retry-after")
                raise adapter.error(response.status_code, body, retry_after)
            bodies.append(body)
        return adapter.embeddings_response(bodies, request, model)

    @staticmethod
    async def _whole_body(model: Model, response: httpx.Response) -> bytes:
        """A response's whole body; a failure reading it is the upstream's."""
        try:
            return await _read_body(response)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{model.provider} timed out sending its response") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{model.provider} failed mid-response: {why(exc)}") from exc
        finally:
            await response.aclose()


async def _read_body(response: httpx.Response) -> bytes:
    """The body, skipping httpx's decoder layers when the upstream honoured `identity`."""
    if "content-encoding" in response.headers:
        return await response.aread()
    parts = [part async for part in response.stream]
    return parts[0] if len(parts) == 1 else b"".join(parts)
