"""`/mcp` behind the edge: the MCP SDK loaded on first use.

The SDK and its dependencies weigh ~26 MB in every gateway process (and a worker per
core multiplies that), while most gateways never see an MCP client. The first `/mcp`
request imports `proxy.http.mcp` in a worker thread (the event loop keeps serving),
builds the SDK's app and starts its session manager in the nursery `run` holds open;
requests that arrive meanwhile wait for the same load.
"""

from __future__ import annotations

import importlib
from typing import Any

import trio

from ..services import Services
from .asgi import Receive, Scope, Send


class McpServer:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._sdk: Any = None  # `mcp.SdkServer` once loaded
        self._loading: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._running = trio.CancelScope()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold open the nursery the SDK's session manager runs in, until `stop`."""
        with self._running:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()

    def stop(self) -> None:
        self._running.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one `/mcp` request (the edge has authenticated it) with the SDK's app."""
        if self._sdk is None:
            await self._load()
        await self._sdk.app(scope, receive, send)

    async def _load(self) -> None:
        while self._sdk is None:
            if self._loading is not None:  # another request is loading it: wait, look again
                await self._loading.wait()
                continue
            self._loading = trio.Event()
            try:
                module = await trio.to_thread.run_sync(importlib.import_module, "proxy.http.mcp")
                sdk = await trio.to_thread.run_sync(module.build, self._services)
                assert self._nursery is not None, "McpServer.run must be running"
                await self._nursery.start(_session_manager, sdk.session_manager)
                self._sdk = sdk
            finally:  # a load that failed or was cancelled is tried again by the next request
                loading, self._loading = self._loading, None
                loading.set()


async def _session_manager(manager: Any, task_status: trio.TaskStatus[None]) -> None:
    async with manager.run():
        task_status.started()
        await trio.sleep_forever()
