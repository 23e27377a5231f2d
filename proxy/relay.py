"""The only module that touches httpx: send to upstreams, relay their streams.

Each provider gets a few small `httpx2` clients used round-robin rather than one
big pool: httpcore scans every connection of a pool on each acquire and
release, which collapses at high concurrency (see ARCHITECTURE.md). Clients are
built once at start-up. A pooled connection that fails before any response
byte (the upstream closed an idle keep-alive connection) is retried once.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import AsyncIterator, Callable, Mapping

import httpx2 as httpx
import orjson
import trio

from .catalog import Model
from .chat import ChatRequest
from .config import ProviderSettings
from .errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable, error_body
from .providers.base import Adapter, Completion, StreamTranslator, UpstreamRequest, upstream_error
from .sse import DONE, encode_data

CONNECTIONS_PER_SHARD = 64  # keeps httpcore's per-acquire scan of a pool short
_RETRYABLE_BEFORE_RESPONSE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


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


class StreamCutter:
    """Ends every open stream cleanly on demand (graceful shutdown past its grace period).

    Only the wait for the next upstream chunk is cancellable: a stream that is cut
    still sends its client an error event and records its usage.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._scopes: set[trio.CancelScope] = set()

    def cut(self, reason: str) -> None:
        self.reason = reason
        for scope in self._scopes:
            scope.cancel()

    @property
    def open_reads(self) -> int:
        return len(self._scopes)

    def scope(self, timeout: float) -> trio.CancelScope:
        """A cancel scope for one wait on the upstream; `release` it afterwards."""
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        if self.reason is not None:
            scope.cancel()
        self._scopes.add(scope)
        return scope

    def release(self, scope: trio.CancelScope) -> None:
        self._scopes.discard(scope)


class UpstreamStream:
    """An open upstream stream; iterate `events()` once, in the task that serves the client."""

    def __init__(
        self,
        response: httpx.Response,
        translator: StreamTranslator,
        idle_timeout: float,
        cutter: StreamCutter,
    ) -> None:
        self.translator = translator
        self.state = translator.state
        self.first_byte_at: float | None = None
        self._response = response
        self._idle = idle_timeout
        self._cutter = cutter

    async def events(self) -> AsyncIterator[bytes]:
        """Client SSE bytes as upstream chunks arrive; ends with [DONE] or an error event.

        Events already buffered from one upstream read go out in one write, and one
        cancel scope (shutdown cut + idle deadline) covers each such batch: under
        load this, not parsing, is what a relayed chunk costs.
        """
        raw = self._response.aiter_raw()
        more_buffered = _buffered_probe(self._response)
        cutter, feed, state = self._cutter, self.translator.feed, self.state
        pending: list[bytes] = []
        ended = False
        try:
            while not ended and state.error is None:
                scope = cutter.scope(self._idle)
                try:
                    with scope:
                        while True:
                            try:
                                chunk = await raw.__anext__()
                            except StopAsyncIteration:
                                ended = True
                                break
                            pending += feed(chunk)
                            if state.error is not None or (pending and not more_buffered()):
                                break
                finally:
                    cutter.release(scope)
                if scope.cancelled_caught:
                    state.error = (
                        UpstreamUnavailable(cutter.reason)
                        if cutter.reason
                        else UpstreamTimeout(
                            f"the upstream sent nothing for {self._idle:g} s mid-stream"
                        )
                    )
                if pending:
                    if self.first_byte_at is None:
                        self.first_byte_at = trio.current_time()
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                    pending.clear()
            if state.error is None:
                events = self.translator.finish()
                if events:
                    yield b"".join(events)
        except httpx.HTTPError as exc:
            state.error = UpstreamError(f"the upstream connection failed mid-stream: {_why(exc)}")
        finally:
            with trio.CancelScope(shield=True):
                await raw.aclose()
                await self._response.aclose()
        if state.error is not None:
            yield encode_data(orjson.dumps(error_body(state.error)))
        else:
            yield DONE


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
        try:
            body = await _read_body(response)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{model.provider} timed out sending its response") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{model.provider} failed mid-response: {_why(exc)}") from exc
        finally:
            await response.aclose()
        if response.status_code >= 400:
            raise self._error(model, adapter, response, body)
        return adapter.chat_response(body, model)

    async def open_stream(self, chat: ChatRequest, model: Model) -> UpstreamStream:
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

    def limit_field(self, model: Model) -> str:
        return self._adapters[model.provider].limit_field

    def _key(self, model: Model) -> str | None:
        return self._providers[model.provider].api_key

    async def _send(self, model: Model, upstream: UpstreamRequest) -> httpx.Response:
        pool = self._pools[model.provider]
        for attempt in (1, 2):
            request = httpx.Request(
                "POST",
                pool.url(upstream.path),
                content=upstream.body,
                headers=upstream.headers,
                extensions={"timeout": pool.timeout},
            )
            try:
                return await pool.send(request)
            except _RETRYABLE_BEFORE_RESPONSE as exc:
                if attempt == 2:
                    raise UpstreamError(f"{model.provider} connection failed: {_why(exc)}") from exc
            except httpx.PoolTimeout as exc:
                raise UpstreamUnavailable(
                    f"too many requests in flight to {model.provider}; try again shortly"
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
                raise UpstreamError(f"cannot connect to {model.provider}: {_why(exc)}") from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{model.provider} request failed: {_why(exc)}") from exc
        raise AssertionError("unreachable")

    def _error(
        self, model: Model, adapter: Adapter, response: httpx.Response, body: bytes
    ) -> GatewayError:
        return upstream_error(
            response.status_code,
            adapter.error_message(body),
            response.headers.get("retry-after"),
            model.provider,
        )


async def _read_body(response: httpx.Response) -> bytes:
    """The body, skipping httpx's decoder layers when the upstream honoured `identity`."""
    if "content-encoding" in response.headers:
        return await response.aread()
    parts = [part async for part in response.stream]
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _buffered_probe(response: httpx.Response) -> Callable[[], bool]:
    """Whether the upstream connection already holds the next complete event.

    httpcore hands out one HTTP chunk per iteration even when many arrived in one
    read; peeking at its h11 buffer lets all of them go to the client in one write.
    """
    try:
        h11_state = response.stream._httpcore_stream._stream._connection._h11_state  # type: ignore[attr-defined]
        buffer = h11_state._receive_buffer
    except AttributeError:
        return lambda: False
    return lambda: len(buffer) > 0 and (b"\n\n" in buffer._data or b"\r\n\r\n" in buffer._data)
