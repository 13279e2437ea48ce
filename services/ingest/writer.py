"""Batched, pipelined appends to the per-symbol Redis Streams.

Entries are queued synchronously (the Nautilus Actor's handlers are sync) and written
by one background task in pipelined batches with ``XADD MAXLEN ~``. After a batch that
contains snapshot entries, ``keys.checkpoint(symbol)`` is set to the id of the newest
one, so the pointer only ever names an entry that already exists. A failed batch is
retried (never dropped) until ``close`` gives up at its deadline.

The XADD commands are packed into RESP here (``pack_xadd``: a cached per-stream prefix
plus the five fields) and sent on one pooled connection, replies read in order -- what
redis-py's pipeline does, minus its generic per-argument packing, which cost more than
everything else on the write path.
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


def resp_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def xadd_prefix(stream: bytes, maxlen: int, nfields: int) -> bytes:
    """RESP of ``XADD stream MAXLEN ~ maxlen *`` for an entry of ``nfields`` fields."""
    head = [b"XADD", stream, b"MAXLEN", b"~", str(maxlen).encode(), b"*"]
    return b"*%d\r\n" % (len(head) + 2 * nfields) + b"".join(map(resp_bulk, head))


_WIRE_KEYS = (b"v", b"k", b"et", b"rt", b"p")
_WIRE_TEMPLATE = b"".join(b"$%d\r\n%b\r\n" % (len(k), k) + b"$%d\r\n%b\r\n" for k in _WIRE_KEYS)


def pack_fields(fields: dict[bytes, bytes]) -> bytes:
    """The field/value pairs of one entry as RESP bulk strings."""
    if tuple(fields) == _WIRE_KEYS:  # the wire v1 entry: one formatting operation
        v, k, et, rt, p = fields.values()
        return _WIRE_TEMPLATE % (len(v), v, len(k), k, len(et), et, len(rt), rt, len(p), p)
    return b"".join(
        [b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(k), k, len(v), v) for k, v in fields.items()]
    )


@dataclass(slots=True)
class _Pending:
    symbol: str
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
        self._prefixes: dict[tuple[str, int], bytes] = {}
        self._symbols: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def append(self, symbol: str, kind: str, fields: dict[bytes, bytes]) -> None:
        """Queue one wire entry for ``keys.stream(symbol)``."""
        if symbol not in self._symbols:
            keys.stream(symbol)  # raises InvalidSymbolError here, not in the write task
            self._symbols.add(symbol)
        self._queue.append(_Pending(symbol, kind, fields, kind == "snap"))
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
            ids = await self._xadd_batch(batch)
            written: dict[tuple[str, str], int] = {}
            for item, entry_id in zip(batch, ids, strict=True):
                key = (item.symbol, item.kind)
                written[key] = written.get(key, 0) + 1
                self.last_ids[item.symbol] = entry_id
                if item.snap:
                    self._checkpoints[item.symbol] = entry_id
            for (symbol, kind), count in written.items():
                metrics.ENTRIES.labels(symbol, kind).inc(count)
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

    def _packed(self, item: _Pending) -> bytes:
        key = (item.symbol, len(item.fields))
        prefix = self._prefixes.get(key)
        if prefix is None:  # keys.stream validates the symbol: once per symbol, not per entry
            prefix = self._prefixes[key] = xadd_prefix(
                keys.stream(item.symbol).encode(), self._maxlen, len(item.fields)
            )
        return prefix + pack_fields(item.fields)

    async def _xadd_batch(self, batch: list[_Pending]) -> list[bytes]:
        """Send the batch's XADDs in one write on one connection; the ids, in order.

        Any error disconnects the connection (replies may be left unread), so the pool
        never hands out a connection in an unknown state; the caller retries the batch.
        """
        pool = self._redis.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command([self._packed(item) for item in batch])
            ids = [await conn.read_response() for _ in batch]
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return ids

    async def _set_checkpoints(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pending = dict(self._checkpoints)
        for symbol, entry_id in pending.items():
            pipe.set(keys.checkpoint(symbol), entry_id)
        await pipe.execute()
        for symbol, entry_id in pending.items():
            if self._checkpoints.get(symbol) == entry_id:
                del self._checkpoints[symbol]
