"""The publisher shell: read candidates as a consumer group, write fenced, ack.

Each batch: XREADGROUP -> ``core.prepare`` per entry -> one pipeline of
``fenced_publish.lua`` calls (each touches ONE symbol's token/report/audit keys) ->
XACK of every entry with a definite outcome. An entry whose write failed on a Redis
error stays pending and is retried through XAUTOCLAIM, by this or another publisher.
"""

from __future__ import annotations

import time
from typing import Any

from redis.exceptions import RedisError, ResponseError

from services.publisher.core import ACCEPTED, SCRIPT_REASONS, Ready, Rejected, prepare
from services.publisher.metrics import PublisherMetrics
from services.publisher.settings import Settings
from shared import keys
from shared.lifecycle import Shutdown
from shared.redis_client import RedisClient
from shared.scripts import Scripts

Entry = tuple[bytes, dict[bytes, bytes] | None]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Publisher:
    """One publisher process: a consumer named after its node id."""

    def __init__(
        self, client: RedisClient, settings: Settings, metrics: PublisherMetrics, log: Any
    ) -> None:
        self._client = client
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self.consumer = settings.node_id
        self._scripts = Scripts(client)
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0

    # --- set-up and loop --------------------------------------------------------------

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; from id 0."""
        try:
            await self._client.xgroup_create(
                keys.CANDIDATES, keys.PUBLISHER_GROUP, id="0", mkstream=True
            )
            self._log.info("consumer_group_created", group=keys.PUBLISHER_GROUP)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, shutdown: Shutdown) -> None:
        """Consume until shutdown; the batch in flight is finished and acked first."""
        ready = False
        while not shutdown.requested:
            try:
                if not ready:
                    await self.ensure_group()
                    await self.drain_own_pending()
                    ready = True
                await self.step()
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    ready = False  # stream or group deleted: recreate
                    continue
                self._metrics.errors.inc()
                self._log.warning("publisher_step_failed", error=repr(exc))
                await shutdown.wait(0.5)
            except RedisError as exc:
                self._metrics.errors.inc()
                self._log.warning("publisher_step_failed", error=repr(exc))
                await shutdown.wait(0.5)
        await self._leave_group()

    async def step(self) -> int:
        """Claim stale entries when due, then read and process one batch."""
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self._settings.publisher_claim_interval_ms / 1000
            await self.claim_stale()
            await self.refresh_pending()
        entries = await self._read(">", block=self._settings.publisher_block_ms)
        if entries:
            await self.process(entries)
        return len(entries)

    async def drain_own_pending(self) -> None:
        """Re-process entries delivered to this consumer name before a restart."""
        while entries := await self._read("0", block=None):
            await self.process(entries)
            if len(entries) < self._settings.publisher_batch:
                break

    async def _read(self, start: str, block: int | None) -> list[Entry]:
        reply: Any = await self._client.xreadgroup(
            keys.PUBLISHER_GROUP,
            self.consumer,
            {keys.CANDIDATES: start},
            count=self._settings.publisher_batch,
            block=block,
        )
        if not reply:
            return []
        # RESP2 list [[stream, entries]]; RESP3 dict {stream: [entries]}.
        streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
        return [(eid, fields) for batch in streams for eid, fields in batch]

    async def claim_stale(self) -> int:
        """XAUTOCLAIM entries idle longer than the claim threshold and process them."""
        reply = await self._client.xautoclaim(
            keys.CANDIDATES,
            keys.PUBLISHER_GROUP,
            self.consumer,
            min_idle_time=self._settings.publisher_claim_idle_ms,
            start_id=self._claim_cursor,
            count=self._settings.publisher_batch,
        )
        self._claim_cursor, entries = reply[0], reply[1]
        if entries:
            self._metrics.claimed.inc(len(entries))
            self._log.info("pending_claimed", count=len(entries))
            await self.process(list(entries))
        return len(entries)

    async def refresh_pending(self) -> None:
        info = await self._client.xpending(keys.CANDIDATES, keys.PUBLISHER_GROUP)
        self._metrics.pending.set(int(info["pending"]))

    async def _leave_group(self) -> None:
        """Remove this consumer if nothing is pending on it (names are per process)."""
        try:
            mine = await self._client.xpending_range(
                keys.CANDIDATES, keys.PUBLISHER_GROUP, "-", "+", 1, consumername=self.consumer
            )
            if not mine:
                await self._client.xgroup_delconsumer(
                    keys.CANDIDATES, keys.PUBLISHER_GROUP, self.consumer
                )
        except RedisError as exc:
            self._log.warning("consumer_cleanup_failed", error=repr(exc))

    # --- one batch --------------------------------------------------------------------

    async def process(self, entries: list[Entry]) -> None:
        """Prepare, write (fenced, pipelined) and ack one batch."""
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
                    continue  # stays pending; retried after claim_idle_ms
                ack.append(item.entry_id)
                status, current = int(result[0]), int(result[1])
                if status == ACCEPTED:
                    self._metrics.accepted.inc()
                    self._metrics.latency.observe(done - read_at)
                else:
                    reason = SCRIPT_REASONS.get(status, "malformed")
                    detail = f"token {item.candidate.token}, current {current}"
                    self._reject(item.entry_id, reason, item.candidate.symbol, detail)
        if ack:
            await self._client.xack(keys.CANDIDATES, keys.PUBLISHER_GROUP, *ack)

    def _reject(self, entry_id: bytes, reason: str, symbol: str | None, detail: str) -> None:
        self._metrics.rejected.labels(reason=reason).inc()
        log = self._log.warning if reason in ("malformed", "invalid") else self._log.debug
        log("candidate_rejected", reason=reason, symbol=symbol, entry=entry_id, detail=detail)

    def _write_args(self, item: Ready) -> tuple[list[str], list[Any]]:
        c = item.candidate
        return (
            [keys.token(c.symbol), keys.report(c.symbol), keys.audit(c.symbol)],
            [
                c.token,
                c.event_ms,
                c.node_id,
                item.report_json,
                wall_ms(),
                self._settings.publisher_audit_maxlen,
            ],
        )

    async def _write(self, ready: list[Ready]) -> list[Any]:
        """One fenced_publish per candidate, in one round trip, in order; exceptions
        returned in their place (``Scripts.pipelined``: a single Redis or a cluster)."""
        return await self._scripts.pipelined(
            "fenced_publish", [self._write_args(item) for item in ready]
        )
