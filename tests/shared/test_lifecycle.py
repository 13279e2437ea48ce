"""shared.lifecycle.sleep_unless: the one "sleep unless stopped" of the service loops."""

from __future__ import annotations

import asyncio
import time

from shared.lifecycle import Shutdown, sleep_unless


async def test_sleeps_the_whole_delay_when_not_stopped() -> None:
    event = asyncio.Event()
    started = time.monotonic()
    assert await sleep_unless(event, 0.05) is False
    assert time.monotonic() - started >= 0.045


async def test_returns_at_once_when_already_stopped() -> None:
    event = asyncio.Event()
    event.set()
    started = time.monotonic()
    assert await sleep_unless(event, 30.0) is True
    assert time.monotonic() - started < 0.5


async def test_a_stop_during_the_sleep_ends_it() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, event.set)
    started = time.monotonic()
    assert await sleep_unless(event, 30.0) is True
    assert time.monotonic() - started < 5.0


async def test_negative_or_zero_delay_does_not_wait() -> None:
    event = asyncio.Event()
    assert await sleep_unless(event, -1.0) is False
    assert await sleep_unless(event, 0.0) is False


async def test_shutdown_wait_uses_it() -> None:
    shutdown = Shutdown()
    assert await shutdown.wait(0.01) is False
    shutdown.event.set()
    assert await shutdown.wait(30.0) is True
