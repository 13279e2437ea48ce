"""Batched, pipelined appends to the per-symbol Redis Streams.

Entries are queued synchronously (the Nautilus Actor's handlers are sync) and written
by one background task in pipelined batches with ``XADD MAXLEN ~``. After a batch that
contains snapshot entries, ``keys.checkpoint(symbol)`` is set to the id of the newest
one, so the pointer only ever names an entry that already exists. A failed batch is
retried (never dropped) until ``close`` gives up at its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.ingest import metrics
from shared import keys


@dataclass(slots=True)
class _Pending:
    symbol: str
    stream: str
    kind: str
    fields: dict[Any, Any]
    snap: bool


class StreamWriter:
    """Owns the write path to Redis; ``append`` never blocks, ``run`` drains."""

    def __init__(
        self,
        redis: Redis,
        maxlen: int,
        batch_size: int = 500,
        flush_interval_s: float = 0.02,
        high_water: int = 50_000,
        log: Any = None,
    ) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._high_water = high_water
        self._low_water = high_water // 4
        self._log = log
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._in_flight = 0
        self.written = 0
        self.last_ids: dict[str, bytes] = {}
        #: Checkpoint pointers still to set (kept across a failed attempt).
        self._checkpoints: dict[str, bytes] = {}

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def append(self, symbol: str, kind: str, fields: dict[bytes, bytes]) -> None:
        """Queue one wire entry for ``keys.stream(symbol)``."""
        self._queue.append(_Pending(symbol, keys.stream(symbol), kind, fields, kind == "snap"))
        self._idle.clear()
        if len(self._queue) >= self._batch_size:
            self._wakeup.set()
        if len(self._queue) >= self._high_water:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Backpressure for producers: wait while the queue is above its high-water mark."""
        await self._room.wait()

    async def wait_idle(self) -> None:
        """Wait until everything appended so far is written."""
        if self.pending:
            self._wakeup.set()
        await self._idle.wait()

    async def run(self) -> None:
        """Write batches until ``close``; retries a failed batch with backoff."""
        backoff = 0.05
        while not (self._closing and not self._queue and not self._checkpoints):
            if not self._queue and not self._checkpoints:
                self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._flush_interval_s)
                self._wakeup.clear()
                continue
            try:
                await self._write_batch()
                backoff = 0.05
            except (RedisError, OSError) as exc:
                metrics.WRITE_ERRORS.inc()
                if self._log is not None:
                    self._log.warning("stream write failed; retrying", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        self._idle.set()

    async def close(self, timeout: float = 3.0) -> int:
        """Flush what is queued (up to ``timeout`` s); return entries left unwritten."""
        self._closing = True
        self._wakeup.set()
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(self._idle.wait(), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
        return self.pending

    async def _write_batch(self) -> None:
        if self._checkpoints:
            await self._set_checkpoints()
        batch = [self._queue[i] for i in range(min(self._batch_size, len(self._queue)))]
        if not batch:
            return
        self._in_flight = len(batch)
        try:
            pipe = self._redis.pipeline(transaction=False)
            for item in batch:
                pipe.xadd(item.stream, item.fields, maxlen=self._maxlen, approximate=True)
            ids = await pipe.execute()
            for item, entry_id in zip(batch, ids, strict=True):
                metrics.ENTRIES.labels(item.symbol, item.kind).inc()
                self.last_ids[item.symbol] = entry_id
                if item.snap:
                    self._checkpoints[item.symbol] = entry_id
            # Remove only after success: a failed batch stays queued for the retry.
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)
            if self._checkpoints:
                await self._set_checkpoints()
        finally:
            self._in_flight = 0
        metrics.PENDING.set(len(self._queue))
        if len(self._queue) <= self._low_water:
            self._room.set()

    async def _set_checkpoints(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pending = dict(self._checkpoints)
        for symbol, entry_id in pending.items():
            pipe.set(keys.checkpoint(symbol), entry_id)
        await pipe.execute()
        for symbol, entry_id in pending.items():
            if self._checkpoints.get(symbol) == entry_id:
                del self._checkpoints[symbol]
