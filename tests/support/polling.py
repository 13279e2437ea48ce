"""Waiting in tests: poll a condition until it holds or a deadline passes.

The interval only sets how often the condition is looked at; the deadline decides.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def poll(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Return ``predicate()``'s first truthy value; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def apoll(
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """``poll`` for async tests; ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
