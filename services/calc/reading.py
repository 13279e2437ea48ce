"""Reading a calc worker's market-data streams: one XREAD for every symbol, sliced work.

A worker follows the stream (``keys.stream``) of every symbol assigned to it through
``StreamReader``s:

* on one Redis, a single reader: one ``XREAD COUNT n BLOCK ms STREAMS <every stream>
  <ids>`` per round, whatever the number of symbols;
* on a Redis Cluster a multi-key command must stay in one hash slot: one reader per slot
  (every symbol's keys carry its own ``{SYMBOL}`` tag, so in practice one per symbol).

A symbol that joins a reader (a new assignment or a takeover) first catches up from its
checkpoint (``XRANGE`` pages, every joining symbol in one pipeline), then joins the
reader's ``XREAD``. A join or a leave interrupts a blocking ``XREAD`` in flight (the
read is cancelled, redis-py drops that connection), so a takeover never waits for the
``BLOCK`` timeout.

The CPU work (decoding, the analytics core, building reports) runs in slices: a reader
applies entries until its slice (``C8_CALC_SLICE_MS``) is used up, hands the cycles
computed so far to the emitter, and yields the event loop before going on (``Slicer``).
A burst that hits every symbol at once therefore never holds the loop for longer than a
slice: the heartbeat, the lease renewals and the emitter run in between, and a worker
that is merely busy keeps its membership and its leases (its backlog shows in
``context8_calc_stream_lag_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from redis.exceptions import RedisError

from shared import keys

if TYPE_CHECKING:
    from services.calc.worker import CalcWorker, SymbolRunner

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]

#: One read asks for at most this many times ``C8_CALC_XREAD_COUNT`` entries in all
#: (per stream: never fewer than ``MIN_COUNT``): redis-py turns a whole reply into Python
#: objects at once, so a backlog over many streams is read in several bounded rounds.
READ_BUDGET = 4
MIN_COUNT = 16


class Slicer:
    """Shares the event loop among the readers in slices of at most ``slice_s`` of work.

    A reader works only while it holds the slicer (``async with slicer``); once ``due``
    it ``pause``s: it gives the slicer to the next waiting reader and lets every other
    ready task and timer run before it continues.
    """

    def __init__(self, slice_s: float, pauses: Counter) -> None:
        self.slice_s = slice_s
        #: Counts the pauses (``context8_calc_slice_pauses_total``).
        self.pauses = pauses
        self._lock = asyncio.Lock()
        self._until = 0.0

    async def __aenter__(self) -> Slicer:
        await self._lock.acquire()
        self._until = time.perf_counter() + self.slice_s
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()

    @property
    def deadline(self) -> float:
        """``time.perf_counter()`` value at which the current slice is used up."""
        return self._until

    def due(self) -> bool:
        return time.perf_counter() >= self._until

    async def pause(self) -> None:
        """Yield the loop (and the slicer) once; then a fresh slice."""
        self.pauses.inc()
        self._lock.release()
        try:
            await asyncio.sleep(0)
        finally:
            await self._lock.acquire()
        self._until = time.perf_counter() + self.slice_s


def xread_batches(reply: Any) -> list[tuple[bytes, StreamEntries]]:
    """``(stream key, entries)`` of an XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(bytes(k), list(v)) for k, v in reply.items()]
    return [(bytes(k), list(v)) for k, v in reply]


def _exclusive(stream_id: bytes) -> bytes:
    return b"(" + stream_id


class StreamReader:
    """Follows the streams of a set of symbol runners with one XREAD per round."""

    def __init__(self, worker: CalcWorker, name: str) -> None:
        self.worker = worker
        self.m = worker.m
        self.name = name
        #: stream key (bytes) -> runner
        self.members: dict[bytes, SymbolRunner] = {}
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        #: XREAD calls made (one per round, not one per symbol) and the most streams one
        #: of them returned entries of.
        self.reads = 0
        self.widest = 0

    # --- membership -----------------------------------------------------------------

    def add(self, runner: SymbolRunner) -> None:
        self.members[runner.stream_key] = runner
        self._changed.set()

    def remove(self, runner: SymbolRunner) -> None:
        if self.members.get(runner.stream_key) is runner:
            del self.members[runner.stream_key]
            self._changed.set()

    def start(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set or no member is left (a new reader starts then)."""
        self.task = asyncio.create_task(self._run(stop), name=f"reader:{self.name}")

    # --- the loop -------------------------------------------------------------------

    async def _run(self, stop: asyncio.Event) -> None:
        log = self.worker.log
        while self.members and not stop.is_set():
            try:
                await self.round()
            except RedisError as exc:
                self.m.redis_errors.labels(op="read").inc()
                log.warning("stream_read_failed", reader=self.name, error=repr(exc))
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("read_loop_error", reader=self.name, error=repr(exc))
                await asyncio.sleep(0.5)

    async def round(self) -> None:
        """Read once (catch-up pages, then XREAD) and apply what came."""
        self._changed.clear()
        runners = [r for r in self.members.values() if r.active]
        joining = [r for r in runners if r.catching_up]
        batches = await self._catch_up(joining) if joining else []
        streaming = [r for r in runners if not r.catching_up and r.stream_key in self.members]
        if streaming:
            # Never block while catch-up pages wait to be applied.
            block = None if joining else self.worker.settings.calc_xread_block_ms
            batches += await self._xread(streaming, block)
        elif not joining:
            # Nothing to read: wait for a member (the watchdog still ticks).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait(), self.worker.settings.calc_xread_block_ms / 1000
                )
        await self.worker.apply(batches, runners)

    async def _catch_up(self, joining: list[SymbolRunner]) -> list[tuple[SymbolRunner, Any]]:
        """One XRANGE page of every joining symbol (from its checkpoint the first time)."""
        client = self.worker.client
        count = self._count(len(joining))
        fresh = [r for r in joining if r.last_id is None]
        if fresh:
            pipe = client.pipeline(transaction=False)
            for r in fresh:
                pipe.get(keys.checkpoint(r.symbol))
            for r, ckpt in zip(fresh, await pipe.execute(), strict=True):
                # Where a takeover starts: the newest snapshot's id, else the beginning.
                r.last_id = bytes(ckpt) if ckpt else b"0-0"
        pipe = client.pipeline(transaction=False)
        for r in joining:
            assert r.last_id is not None
            lo = r.last_id if r.first_read else _exclusive(r.last_id)
            pipe.xrange(r.stream, min=lo, max="+", count=count)
        pages = await pipe.execute()
        out: list[tuple[SymbolRunner, Any]] = []
        for r, page in zip(joining, pages, strict=True):
            r.first_read = False
            if page:
                r.last_id = page[-1][0]
            if len(page) < count:
                r.catching_up = False
            out.append((r, page))
        return out

    def _count(self, streams: int) -> int:
        """Entries to ask per stream: ``C8_CALC_XREAD_COUNT``, shared out when many
        streams are read at once (a reply is parsed in one go, before any slicing)."""
        most = self.worker.settings.calc_xread_count
        return max(MIN_COUNT, min(most, READ_BUDGET * most // max(streams, 1)))

    async def _xread(
        self, streaming: list[SymbolRunner], block: int | None
    ) -> list[tuple[SymbolRunner, Any]]:
        streams: dict[Any, Any] = {}
        for r in streaming:
            assert r.last_id is not None
            streams[r.stream_key] = r.last_id
        count = self._count(len(streams))
        if block is None:
            self.reads += 1
            reply = await self.worker.client.xread(streams, count=count)
        elif self._changed.is_set():
            return []  # members changed meanwhile: read again at once with the new ones
        else:
            self.reads += 1
            reply = await self._interruptible(
                self.worker.blocking.xread(streams, count=count, block=block)
            )
        out: list[tuple[SymbolRunner, Any]] = []
        for key, entries in xread_batches(reply):
            runner = self.members.get(key)
            if runner is not None and runner.active and entries:
                runner.last_id = entries[-1][0]
                out.append((runner, entries))
        self.widest = max(self.widest, len(out))
        return out

    async def _interruptible(self, read: Any) -> Any:
        """A blocking read that a membership change cuts short (then: no entries)."""
        read_task = asyncio.ensure_future(read)
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            done, _ = await asyncio.wait({read_task, changed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            read_task.cancel()
            changed.cancel()
            raise
        changed.cancel()
        if read_task in done:
            return read_task.result()
        # Cut short: redis-py disconnects the cancelled read's connection, so no reply
        # can be left on it. Entries it would have returned are read again next round.
        read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, RedisError):
            await read_task
        return None
