"""The publisher shell: read the candidate partitions it holds, write fenced, ack.

The partitions (``partitions.py``) are shared among the publishers; this one runs a
reader task per partition it holds. A reader first claims every entry still pending in
the partition's consumer group (delivered to a publisher that died, or to this one
before a failed write), then reads new ones. Each batch: XREADGROUP -> ``core.prepare``
per entry -> one pipeline of ``fenced_publish.lua`` calls (each touches ONE symbol's
token/report/audit/history keys and announces the write on its channel) -> XACK of every
entry with a definite outcome. An entry whose write failed on a Redis error stays pending
and is read again (``0``) before new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from redis.exceptions import RedisError, ResponseError

from services.publisher.core import (
    ACCEPTED,
    SCRIPT_REASONS,
    Ready,
    Rejected,
    prepare,
    write_args,
    write_keys,
)
from services.publisher.metrics import PublisherMetrics
from services.publisher.partitions import PartitionKeeper
from services.publisher.settings import Settings
from shared import keys
from shared.history import encode_row
from shared.lifecycle import Shutdown
from shared.redis_client import RedisClient
from shared.scripts import Scripts

Entry = tuple[bytes, dict[bytes, bytes] | None]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Publisher:
    """One publisher process: a consumer named after its node id on each partition."""

    def __init__(
        self, client: RedisClient, settings: Settings, metrics: PublisherMetrics, log: Any
    ) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self.consumer = settings.node_id
        self._scripts = Scripts(client)
        self.keeper = PartitionKeeper(
            client,
            settings.node_id,
            settings.candidate_partitions,
            settings.publisher_partition_ttl_ms,
            log,
            on_loss=self._lost,
        )
        self._readers: dict[int, asyncio.Task[None]] = {}
        #: Partitions with entries of this consumer left pending by a failed write.
        self._retry: set[int] = set()
        #: Symbol -> exchange-time second of this publisher's last accepted write: a
        #: later write in the same second cannot start a history row (the script keeps
        #: the first of each second), so its row is neither built nor sent.
        self._history_second: dict[str, int] = {}

    # --- set-up and loop --------------------------------------------------------------

    async def run(self, shutdown: Shutdown) -> None:
        """Hold partitions and read them until shutdown; then finish, ack, give back."""
        self._shutdown = shutdown
        while not shutdown.requested:
            try:
                await self.keeper.step()
                self._start_readers()
            except RedisError as exc:
                self._metrics.errors.inc()
                self._log.warning("partition_step_failed", error=repr(exc))
            await shutdown.wait(self.keeper.tick_s)
        with contextlib.suppress(RedisError):
            await self.keeper.leave()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        self._metrics.partitions.set(0)

    def _start_readers(self) -> None:
        """A reader for every partition held that has none."""
        for partition in sorted(set(self.keeper.held) - set(self._readers)):
            self._metrics.takeovers.inc()
            self._readers[partition] = asyncio.create_task(
                self._read_partition(partition), name=f"publisher-p{partition}"
            )
        self._metrics.partitions.set(len(self.keeper.held))

    async def _lost(self, partition: int) -> None:
        """Stop the partition's reader after its batch in flight."""
        task = self._readers.pop(partition, None)
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), 5.0)

    async def _read_partition(self, partition: int) -> None:
        opened = False
        next_gauge = 0.0
        while self.keeper.valid(partition) and not self._shutdown.requested:
            try:
                if not opened:
                    await self.open(partition)
                    opened = True
                await self.poll(partition, self._settings.publisher_block_ms)
                if time.monotonic() >= next_gauge:
                    next_gauge = time.monotonic() + 2.0
                    await self.refresh_pending(partition)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    opened = False  # stream or group deleted: recreate
                    continue
                self._metrics.errors.inc()
                self._log.warning("publisher_step_failed", partition=partition, error=repr(exc))
                await self._shutdown.wait(0.5)
            except RedisError as exc:
                self._metrics.errors.inc()
                self._log.warning("publisher_step_failed", partition=partition, error=repr(exc))
                await self._shutdown.wait(0.5)
        with contextlib.suppress(RedisError):
            await self._leave_group(partition)

    async def open(self, partition: int) -> None:
        """Create the partition's group if missing, then take over and process every
        entry still pending in it (this publisher now reads the partition alone)."""
        stream = keys.candidates(partition)
        try:
            await self._client.xgroup_create(stream, keys.PUBLISHER_GROUP, id="0", mkstream=True)
            self._log.info("consumer_group_created", stream=stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        cursor: bytes | str = "0-0"
        while True:
            reply = await self._client.xautoclaim(
                stream,
                keys.PUBLISHER_GROUP,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=self._settings.publisher_batch,
            )
            cursor, entries = reply[0], list(reply[1])
            if entries:
                self._metrics.claimed.inc(len(entries))
                self._log.info("pending_claimed", partition=partition, count=len(entries))
                await self.process(partition, entries)
            if cursor in (b"0-0", "0-0"):
                break

    async def poll(self, partition: int, block: int | None) -> int:
        """Read one batch of the partition (its own failed entries first) and process it."""
        start = "0" if partition in self._retry else ">"
        self._retry.discard(partition)
        entries = await self._read(partition, start, block if start == ">" else None)
        if entries:
            await self.process(partition, entries)
        return len(entries)

    async def _read(self, partition: int, start: str, block: int | None) -> list[Entry]:
        reply: Any = await self._client.xreadgroup(
            keys.PUBLISHER_GROUP,
            self.consumer,
            {keys.candidates(partition): start},
            count=self._settings.publisher_batch,
            block=block,
        )
        if not reply:
            return []
        # RESP2 list [[stream, entries]]; RESP3 dict {stream: [entries]}.
        streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
        return [(eid, fields) for batch in streams for eid, fields in batch]

    async def refresh_pending(self, partition: int) -> None:
        info = await self._client.xpending(keys.candidates(partition), keys.PUBLISHER_GROUP)
        self._metrics.pending.labels(partition=str(partition)).set(int(info["pending"]))

    async def _leave_group(self, partition: int) -> None:
        """Remove this consumer if nothing is pending on it (names are per process)."""
        stream = keys.candidates(partition)
        try:
            mine = await self._client.xpending_range(
                stream, keys.PUBLISHER_GROUP, "-", "+", 1, consumername=self.consumer
            )
            if not mine:
                await self._client.xgroup_delconsumer(stream, keys.PUBLISHER_GROUP, self.consumer)
        except RedisError as exc:
            self._log.warning("consumer_cleanup_failed", partition=partition, error=repr(exc))

    # --- one batch --------------------------------------------------------------------

    async def process(self, partition: int, entries: list[Entry]) -> None:
        """Prepare, write (fenced, pipelined) and ack one batch of a partition.

        Not if the partition's lease may have lapsed meanwhile: its next reader claims
        the batch (a second delivery would be harmless, but is avoided).
        """
        if not self.keeper.valid(partition):
            return
        read_at = time.perf_counter()
        self._metrics.batch_size.observe(len(entries))
        now_ms = wall_ms()
        validate = self._settings.publisher_validate
        ack: list[bytes] = []
        ready: list[Ready] = []
        for entry_id, fields in entries:
            outcome = prepare(entry_id, fields, validate=validate, now_ms=now_ms)
            if isinstance(outcome, Rejected):
                self._reject(outcome.entry_id, outcome.reason, outcome.symbol, outcome.detail)
                ack.append(entry_id)
            else:
                ready.append(outcome)
        if ready:
            results = await self._write(ready)
            done = time.perf_counter()
            for item, result in zip(ready, results, strict=True):
                if isinstance(result, Exception):
                    self._metrics.errors.inc()
                    self._log.warning(
                        "publish_failed", symbol=item.candidate.symbol, error=repr(result)
                    )
                    self._retry.add(partition)
                    continue  # stays pending; read again before new entries
                ack.append(item.entry_id)
                status, current = int(result[0]), int(result[1])
                if status == ACCEPTED:
                    self._metrics.accepted.inc()
                    self._metrics.latency.observe(done - read_at)
                    self._history_written(item, int(result[2]) if len(result) > 2 else 0)
                else:
                    reason = SCRIPT_REASONS.get(status, "malformed")
                    detail = f"token {item.candidate.token}, current {current}"
                    self._reject(item.entry_id, reason, item.candidate.symbol, detail)
        if ack:
            await self._client.xack(keys.candidates(partition), keys.PUBLISHER_GROUP, *ack)

    def _reject(self, entry_id: bytes, reason: str, symbol: str | None, detail: str) -> None:
        self._metrics.rejected.labels(reason=reason).inc()
        log = self._log.warning if reason in ("malformed", "invalid") else self._log.debug
        log("candidate_rejected", reason=reason, symbol=symbol, entry=entry_id, detail=detail)

    def _history_written(self, item: Ready, rows: int) -> None:
        symbol = item.candidate.symbol
        self._history_second[symbol] = item.candidate.event_ms // 1000
        if rows > 0:
            self._metrics.history_rows.inc(rows)
        elif rows < 0:
            self._metrics.history_errors.inc()
            self._log.warning("history_append_failed", symbol=symbol)

    def _history_row(self, item: Ready) -> bytes:
        """The row to offer the script: empty when it cannot start a new second."""
        c = item.candidate
        if item.report is None or self._history_second.get(c.symbol) == c.event_ms // 1000:
            return b""
        if keys.unit_asset(c.symbol) is not None:
            return b""  # asset reports keep no history (the row is a symbol report's)
        return encode_row(item.report)

    def _write_args(self, item: Ready) -> tuple[list[str], list[Any]]:
        c = item.candidate
        return write_keys(c.symbol), write_args(
            c.token,
            c.event_ms,
            c.node_id,
            item.report_json,
            wall_ms(),
            self._settings.publisher_audit_maxlen,
            self._history_row(item),
        )

    async def _write(self, ready: list[Ready]) -> list[Any]:
        """One fenced_publish per candidate, in one round trip, in order; exceptions
        returned in their place (``Scripts.pipelined``: a single Redis or a cluster)."""
        return await self._scripts.pipelined(
            "fenced_publish", [self._write_args(item) for item in ready]
        )
