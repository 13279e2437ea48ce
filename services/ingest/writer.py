"""Batched appends to the per-symbol Redis Streams, one Lua call per symbol and batch.

Entries are queued synchronously (the Nautilus Actor's handlers are sync) and written
by one background task. A batch is split by symbol; each symbol's part is one
``stream_append.lua`` call (``XADD MAXLEN ~`` per entry, then the checkpoint pointer
``keys.checkpoint(symbol)`` set to the newest snapshot entry of the part, atomically),
and all the calls of a batch go out in one write on one pooled connection. Against one
pipelined ``XADD`` per entry this reads one reply per symbol instead of one per entry:
reading replies one by one was the largest cost left on ingest's write path.

A symbol's part is all or nothing, and exactly once: the writer numbers its entries per
symbol and the script skips those this writer already appended (``keys.appended``), so
a batch whose reply was lost (the connection dropped after Redis ran it) can be sent
again. A failed part stays queued, in order, and is retried with back-off; the parts
that succeeded leave the queue. NOSCRIPT (a restarted Redis, a promoted replica) loads
the script on that server and sends those parts again at once.

Only the holder of a symbol's feed claim (``keys.feed_claim``, ``claims.py``) writes
it: ``append`` drops entries of symbols this process does not own (a standby keeps its
feeds warm without writing), and the script itself refuses a part whose claim is not
this process's (``NOTOWNER``: the claim lapsed while the process was paused or cut off,
and another took it over). Such a part is dropped, never retried, the symbol disowned
and ``on_lost`` told.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from services.ingest import metrics
from shared import keys
from shared.redis_client import RedisClient
from shared.scripts import script_sha, script_source

APPEND_SCRIPT = script_source("stream_append")
APPEND_SHA = script_sha("stream_append")


def resp_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def resp_values(values: Iterable[bytes]) -> bytes:
    """Bulk strings, concatenated."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(v), v) for v in values])


_WIRE_KEYS = (b"v", b"k", b"et", b"rt", b"p")
_WIRE_TEMPLATE = b"$%d\r\n%b\r\n" * len(_WIRE_KEYS)


def pack_values(fields: dict[bytes, bytes]) -> bytes:
    """The values of one wire entry as RESP bulk strings (the names travel once per call)."""
    v, k, et, rt, p = fields.values()
    return _WIRE_TEMPLATE % (len(v), v, len(k), k, len(et), et, len(rt), rt, len(p), p)


@dataclass(slots=True)
class _Pending:
    symbol: str
    kind: str
    fields: dict[bytes, bytes]
    seq: int  # the writer's number for this entry, per symbol (1, 2, ...)


class StreamWriter:
    """Owns the write path to Redis; ``append`` never blocks, ``run`` drains."""

    def __init__(
        self,
        redis: RedisClient,
        maxlen: int,
        owner: str,
        batch_size: int = 500,
        flush_interval_s: float = 0.02,
        high_water: int = 50_000,
        log: Any = None,
        on_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        self._redis = redis
        #: The claim value this writer appends for (its process's node id).
        self.owner = owner.encode()
        #: Symbols whose claim this process holds: only their entries are written.
        self.owned: set[str] = set()
        self._on_lost = on_lost
        #: Entries dropped because their symbol is not this process's (standby).
        self.dropped = 0
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
        #: Id of the newest entry written, per symbol.
        self.last_ids: dict[str, bytes] = {}
        #: RESP of a call's fixed head, per symbol.
        self._heads: dict[str, tuple[int, bytes, bytes]] = {}
        #: Entries appended so far, per symbol (the next one's seq is this + 1).
        self._seqs: dict[str, int] = {}
        #: Unique per writer: a new process starts a new numbering.
        self.writer_id = uuid.uuid4().hex.encode()

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    def own(self, symbol: str) -> None:
        """This process holds the symbol's claim now: write its entries."""
        keys.stream(symbol)  # raises InvalidSymbolError here, not in the write task
        self.owned.add(symbol)

    def disown(self, symbol: str) -> int:
        """The claim is gone: stop writing the symbol; drop (and count) what is queued."""
        self.owned.discard(symbol)
        kept = deque(item for item in self._queue if item.symbol != symbol)
        dropped = len(self._queue) - len(kept)
        self._queue = kept
        self.dropped += dropped
        return dropped

    def append(self, symbol: str, kind: str, fields: dict[bytes, bytes]) -> None:
        """Queue one wire entry (``shared.wire.encode``) for ``keys.stream(symbol)``."""
        if tuple(fields) != _WIRE_KEYS:  # the Lua call carries the names once per batch
            raise ValueError(f"not a wire entry: fields {list(fields)}")
        if symbol not in self.owned:
            self.dropped += 1
            return
        seq = self._seqs.get(symbol)
        if seq is None:
            keys.stream(symbol)  # raises InvalidSymbolError here, not in the write task
            seq = 0
        self._seqs[symbol] = seq = seq + 1
        self._queue.append(_Pending(symbol, kind, fields, seq))
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
        """Write batches until ``close``; retries a failed part with backoff."""
        backoff = 0.05
        while not (self._closing and not self._queue):
            if not self._queue:
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
            except Exception as exc:  # the write path must outlive any bug
                # A dead writer task would leave ingest running with its queue growing and
                # nothing written: log loudly, keep the queue, and try again.
                metrics.WRITE_ERRORS.inc()
                if self._log is not None:
                    self._log.error("stream write crashed; retrying", error=repr(exc))
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
        queue = self._queue
        batch = [queue[i] for i in range(min(self._batch_size, len(queue)))]
        parts: dict[str, list[_Pending]] = {}
        for item in batch:
            parts.setdefault(item.symbol, []).append(item)
        self._in_flight = len(batch)
        try:
            replies = await self._call(parts)
        finally:
            self._in_flight = 0
        failed: list[_Pending] = []
        error: ResponseError | None = None
        lost: list[tuple[str, str]] = []
        for (symbol, items), reply in zip(parts.items(), replies, strict=True):
            if isinstance(reply, ResponseError):
                if str(reply).startswith("NOTOWNER"):
                    lost.append((symbol, str(reply)))
                    continue  # never retried: another process owns the symbol now
                failed.extend(items)
                error = reply
                continue
            if reply is not None:  # None: every entry was already there (a retry)
                self.last_ids[symbol] = reply
            kinds: dict[str, int] = {}
            for item in items:
                kinds[item.kind] = kinds.get(item.kind, 0) + 1
            for kind, count in kinds.items():
                metrics.ENTRIES.labels(symbol, kind).inc(count)
        # Remove the batch only now; a failed part goes back to the head, in order.
        for _ in batch:
            queue.popleft()
        queue.extendleft(reversed(failed))
        self.written += len(batch) - len(failed) - sum(len(parts[s]) for s, _ in lost)
        for symbol, message in lost:
            self.dropped += len(parts[symbol])
            self.disown(symbol)
            if self._on_lost is not None:
                self._on_lost(symbol, message)
        queue = self._queue
        metrics.PENDING.set(len(queue))
        if len(queue) <= self._low_water:
            self._room.set()
        if error is not None:
            raise error

    def _packed(self, symbol: str, items: list[_Pending]) -> bytes:
        """``EVALSHA stream_append`` for one symbol's part of a batch, as RESP."""
        head = self._heads.get(symbol)
        if head is None:  # keys.stream validates the symbol: once per symbol, not per entry
            fixed = [
                b"EVALSHA",
                APPEND_SHA,
                b"4",
                keys.stream(symbol).encode(),
                keys.checkpoint(symbol).encode(),
                keys.appended(symbol).encode(),
                keys.feed_claim(symbol).encode(),
                self.writer_id,
                self.owner,
            ]
            settings = [
                str(self._maxlen).encode(),
                str(len(_WIRE_KEYS)).encode(),
                *_WIRE_KEYS,
            ]
            # The first entry's seq goes between the two fixed parts.
            head = self._heads[symbol] = (
                len(fixed) + 1 + len(settings) + 1,
                resp_values(fixed),
                resp_values(settings),
            )
        nargs, fixed_resp, settings_resp = head
        snap_at = 0
        for position, item in enumerate(items, start=1):
            if item.kind == "snap":
                snap_at = position
        values = [pack_values(item.fields) for item in items]
        return b"".join(
            [
                b"*%d\r\n" % (nargs + len(_WIRE_KEYS) * len(items)),
                fixed_resp,
                resp_bulk(str(items[0].seq).encode()),
                settings_resp,
                resp_bulk(str(snap_at).encode()),
                *values,
            ]
        )

    async def _call(self, parts: dict[str, list[_Pending]]) -> list[bytes | ResponseError | None]:
        """Send every part's call in one write on one connection; the replies, in order.

        On a Redis Cluster: one write per node, to the node owning each symbol's slot,
        all nodes at once. An error reply is returned in its part's place (a MOVED or
        ASK reply, the slot map changed, also refreshes it: the part is retried). Any
        other error disconnects the connection (replies may be left unread), so the
        pool never hands out a connection in an unknown state; the caller retries the
        whole batch (nothing of it was acknowledged).
        """
        client = self._redis
        if not isinstance(client, RedisCluster):
            pool = client.connection_pool
            conn = await pool.get_connection()
            try:
                return await self._send(conn, parts, list(parts))
            finally:
                await pool.release(conn)
        by_node: dict[Any, list[str]] = {}
        try:
            for symbol in parts:
                by_node.setdefault(client.get_node_from_key(keys.stream(symbol)), []).append(symbol)
        except RedisClusterException as exc:  # a slot without a node: mid-failover
            await client.nodes_manager.initialize()
            raise RedisError(f"cluster slot map incomplete: {exc}") from exc
        replies: dict[str, bytes | ResponseError | None] = {}

        async def one_node(node: Any, symbols: list[str]) -> None:
            conn = node.acquire_connection()
            try:
                got = await self._send(conn, parts, symbols)
            finally:
                node.release(conn)
            replies.update(zip(symbols, got, strict=True))

        try:
            await asyncio.gather(*(one_node(n, ss) for n, ss in by_node.items()))
        except (RedisError, OSError):
            await client.nodes_manager.initialize()  # a node failed: learn who serves now
            raise
        if any(isinstance(r, (MovedError, AskError)) for r in replies.values()):
            await client.nodes_manager.initialize()
        return [replies[symbol] for symbol in parts]

    async def _send(
        self, conn: Any, parts: dict[str, list[_Pending]], symbols: list[str]
    ) -> list[bytes | ResponseError | None]:
        """``symbols``' calls in one write on ``conn``; their replies, in order.

        A server without the script (restarted, or a replica just promoted: the script
        cache is neither persisted nor replicated) answers NOSCRIPT, having run nothing:
        the script is loaded on that server, over this connection, and those calls sent
        once more.
        """
        try:
            replies = await self._send_once(conn, parts, symbols)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:
                await conn.send_command("SCRIPT", "LOAD", APPEND_SCRIPT)
                await conn.read_response()
                again = await self._send_once(conn, parts, [symbols[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except BaseException:
            await conn.disconnect()
            raise
        return replies

    async def _send_once(
        self, conn: Any, parts: dict[str, list[_Pending]], symbols: list[str]
    ) -> list[bytes | ResponseError | None]:
        await conn.send_packed_command([self._packed(s, parts[s]) for s in symbols])
        replies: list[bytes | ResponseError | None] = []
        for _ in symbols:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
