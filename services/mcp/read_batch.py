"""Reads asked for in the same event-loop turn share one Redis round trip.

Under load many requests are ready in one turn of the loop (100 clients reading the same
report is the common case for a popular symbol). Each of them used to pay redis-py's whole
per-command path (pool checkout, timeout, retry wrapper, send, parse, release): a quarter
of a read's CPU. Here the first read of a turn opens a batch, the reads of the same turn
join it (one entry per distinct key), and the batch is fetched once the turn's ready
callbacks have run: one command for one key, one pipeline for several.

Never staler than reading alone: a caller only joins a batch that has not been sent yet,
so what it gets was read after it asked. A failure reaches every caller of the batch (each
gets its own exception object); a caller that gives up (cancelled) just leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReadBatch(Generic[K, V]):
    """``await batch.read(key)``: ``fetch`` is called once per loop turn with the distinct
    keys asked for in that turn and returns their values in the same order."""

    def __init__(self, fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> None:
        self._fetch = fetch
        self._pending: dict[K, list[asyncio.Future[V]]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Running fetches (a task needs a strong reference until it is done).
        self._running: set[asyncio.Task[None]] = set()

    async def read(self, key: K) -> V:
        loop = asyncio.get_running_loop()
        if self._pending is None or self._loop is not loop:
            # (Another loop: a batch left by a loop that closed before sending is dropped.)
            self._pending = {}
            self._loop = loop
            # Queued behind the callbacks already ready in this turn: those are the other
            # requests that can still join.
            loop.call_soon(self._send, loop)
        future: asyncio.Future[V] = loop.create_future()
        waiters = self._pending.get(key)
        if waiters is None:
            self._pending[key] = [future]
        else:
            waiters.append(future)
        return await future

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return  # that loop's batch was dropped for another loop's
        batch, self._pending = self._pending, None
        if not batch:
            return
        task = asyncio.ensure_future(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        keys = list(batch)
        try:
            values = await self._fetch(keys)
            if len(values) != len(keys):  # a bug in fetch: no caller may wait forever
                raise RuntimeError(f"batch fetch returned {len(values)} values for {len(keys)}")
        except Exception as exc:  # every caller gets the failure, as if it had read alone
            for waiters in batch.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(_copy(exc))
            return
        except BaseException:  # cancelled (loop shutting down): the callers too
            for waiters in batch.values():
                for future in waiters:
                    future.cancel()
            raise
        for key, value in zip(keys, values, strict=True):
            for future in batch[key]:
                if not future.done():
                    future.set_result(value)


def _copy(exc: Exception) -> Exception:
    """A fresh exception like ``exc`` for one caller (a shared one would collect every
    caller's traceback), chained to the original."""
    try:
        fresh = type(exc)(*exc.args)
    except Exception:  # an exception type with another constructor: share it after all
        return exc
    fresh.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc
    return fresh
