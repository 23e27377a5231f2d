"""Serving a fake upstream on a free 127.0.0.1 port for as long as a test needs it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio


class FakeServer(ABC):
    """What every fake shares: `run` under a nursery (started with its URL), `stop`."""

    url: str
    _shutdown: trio.Event

    @abstractmethod
    def app(self) -> QuartTrio:
        """The fake's Quart app, speaking its provider's wire format."""

    async def run(self, *, task_status: trio.TaskStatus[Self] = trio.TASK_STATUS_IGNORED) -> None:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5

        async def serving(task_status: trio.TaskStatus[Any]) -> None:
            await serve(  # type: ignore[arg-type]
                self.app(), config, shutdown_trigger=self._shutdown.wait, task_status=task_status
            )

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(serving)
            self.url = binds[0].replace("0.0.0.0", "127.0.0.1")
            task_status.started(self)

    def stop(self) -> None:
        self._shutdown.set()
