"""Running a service: uvloop, SIGTERM/SIGINT as a stop event, exit code 0 on a clean stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop


class Shutdown:
    """Set once SIGTERM or SIGINT arrives; services watch ``event`` and drain."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.event.set)

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if shutdown was requested."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        return True


def run_service(main: Callable[[Shutdown], Coroutine[Any, Any, None]]) -> int:
    """Run ``main(shutdown)`` on uvloop until it returns; 0 on a clean stop."""

    async def _runner() -> None:
        shutdown = Shutdown()
        shutdown.install()
        await main(shutdown)

    uvloop.run(_runner())
    return 0
