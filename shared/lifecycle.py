"""Stopping a service: SIGTERM/SIGINT as a stop event, and sleeps that end on it."""

from __future__ import annotations

import asyncio
import signal


async def sleep_unless(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``event`` gets set; True if it is set (stop now).

    The one "sleep unless stopped" of every service loop: a stop request never waits out
    a back-off or a poll interval. A negative delay is no delay.
    """
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), max(0.0, seconds))
    except TimeoutError:
        return False
    return True


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
        return await sleep_unless(self.event, timeout)
