"""The calc worker's shell around one asset report (``services/calc/analytics/asset.py``).

The coordinator assigns an asset as one unit (``asset:BTC``, ``keys.asset_unit``) like a
symbol. The worker that gets it runs an ``AssetRunner``: it holds the unit's writer lease
and fencing token (``shared.lease``, keys ``c8:lease:{asset:BTC}``/``c8:token:{asset:BTC}``),
reads every member's market-data stream from its checkpoint (one pipeline of ``XRANGE``
pages per round, so it works on a Redis Cluster where the members live in different
slots), feeds the ``AssetCore`` and sends the reports the watermark releases as
candidates to the unit's partition, in order, under its token. The publisher writes them
fenced like symbol reports (``c8:report:{asset:BTC}``).

Independent of the symbol runners: a worker may own ``BTCUSDT`` and ``asset:BTC`` or
either; each reads the stream on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from services.calc.analytics import with_writer
from services.calc.analytics.asset import AssetCore, AssetParams
from shared import keys
from shared.assets import Member
from shared.candidate import Candidate, encode_candidate
from shared.errors import WireFormatError
from shared.lease import HeldLease
from shared.lifecycle import sleep_unless
from shared.wire import decode

if TYPE_CHECKING:
    from services.calc.worker import CalcWorker

MS = 1_000_000
#: Pause between read rounds that found nothing new.
POLL_S = 0.05
#: Entries asked per member stream and round.
PAGE = 500


def asset_params(fast_cycle_ms: int, max_skew_ms: int) -> AssetParams:
    return AssetParams(fast_cycle_ns=fast_cycle_ms * MS, max_skew_ns=max_skew_ms * MS)


class AssetRunner:
    """One assigned asset: its core, its members' stream positions and its lease."""

    def __init__(self, worker: CalcWorker, asset: str, members: list[Member]) -> None:
        s = worker.settings
        self.worker = worker
        self.m = worker.m
        self.asset = asset
        #: The writer unit (lease, token, report and candidate ``s`` field).
        self.unit = keys.asset_unit(asset)
        self.candidates = keys.candidates_of(self.unit, s.candidate_partitions)
        self.core = AssetCore(
            asset, members, asset_params(s.calc_fast_cycle_ms, s.calc_asset_max_skew_ms)
        )
        self.members = [mb.symbol for mb in members]
        self.log = worker.log.bind(asset=asset)
        self.lease: HeldLease | None = None
        self.active = True
        self._stopped = asyncio.Event()
        #: Stream id read last per member (None: start at its checkpoint).
        self.last_ids: dict[str, bytes | None] = dict.fromkeys(self.members)
        #: Members whose next read includes ``last_ids`` (their checkpoint entry).
        self._inclusive: set[str] = set()
        #: time.monotonic() of the last entry read per member (or of the start).
        self.arrivals: dict[str, float] = dict.fromkeys(self.members, time.monotonic())
        self.published_floor_ms = -1
        self.candidates_emitted = 0
        self.cycles_suppressed = 0
        self.decode_errors = 0
        self.reports = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name=f"lease:{self.unit}"),
            asyncio.create_task(self._read_loop(), name=f"read:{self.unit}"),
        ]

    async def stop(self) -> None:
        """Stop emitting at once, release the lease, end both loops."""
        self.active = False
        self._stopped.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        lease, self.lease = self.lease, None
        if lease is not None:
            with contextlib.suppress(RedisError):
                await self.worker.leases.release(lease)
                self.log.info("lease_released", token=lease.token)
        for gauge in (self.m.asset_stalled, self.m.asset_watermark_lag):
            with contextlib.suppress(KeyError):
                gauge.remove(self.asset)

    # --- lease --------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Acquire the unit's lease, renew it every third of the TTL, acquire again on loss."""
        leases = self.worker.leases
        s = self.worker.settings
        while self.active:
            try:
                lease = self.lease
                if lease is None:
                    got = await leases.acquire(self.unit)
                    if got is None:
                        self.m.lease_conflicts.inc()
                        await sleep_unless(self._stopped, s.calc_lease_retry_ms / 1000)
                        continue
                    stored: Any = await self.worker.client.hget(
                        keys.asset_report(self.asset), "event_ms"
                    )
                    self.published_floor_ms = int(stored) if stored else -1
                    self.lease = got
                    self.m.lease_acquisitions.inc()
                    self.log.info("lease_acquired", token=got.token)
                    continue
                await sleep_unless(self._stopped, s.lease_renew_s)
                if not self.active:
                    return
                if await leases.renew(lease):
                    self.m.lease_renewals.inc()
                elif self.lease is lease:
                    self.lease = None
                    self.m.lease_losses.inc()
                    self.log.warning("lease_lost", token=lease.token)
            except RedisError as exc:
                self.m.redis_errors.labels(op="lease").inc()
                self.log.warning("lease_call_failed", error=repr(exc))
                await sleep_unless(self._stopped, s.calc_lease_retry_ms / 1000)

    # --- reading, the core, emission ----------------------------------------------------

    async def _read_loop(self) -> None:
        while self.active:
            try:
                read = await self.round()
            except RedisError as exc:
                self.m.redis_errors.labels(op="read").inc()
                self.log.warning("asset_read_failed", error=repr(exc))
                read = 0
            except Exception as exc:  # a bug must not end the asset's reports silently
                self.log.exception("asset_round_error", error=repr(exc))
                read = 0
            if read == 0:
                await sleep_unless(self._stopped, POLL_S)

    async def round(self) -> int:
        """Read one page of every member, apply it, emit what the watermark released;
        the number of entries read."""
        client = self.worker.client
        fresh = [sym for sym, last in self.last_ids.items() if last is None]
        if fresh:
            pipe = client.pipeline(transaction=False)
            for sym in fresh:
                pipe.get(keys.checkpoint(sym))
            for sym, ckpt in zip(fresh, await pipe.execute(), strict=True):
                # From the newest snapshot (inclusive), else from the beginning.
                self.last_ids[sym] = bytes(ckpt) if ckpt else b"0-0"
                self._inclusive.add(sym)
        pipe = client.pipeline(transaction=False)
        for sym, last in self.last_ids.items():
            assert last is not None
            lo = last if sym in self._inclusive else b"(" + last
            pipe.xrange(keys.stream(sym), min=lo, max="+", count=PAGE)
        self._inclusive.clear()
        pages = await pipe.execute()
        now = time.monotonic()
        read = 0
        async with self.worker.slicer as slicer:
            for sym, page in zip(list(self.last_ids), pages, strict=True):
                if not page:
                    continue
                read += len(page)
                self.last_ids[sym] = bytes(page[-1][0])
                self.arrivals[sym] = now
                self._apply(sym, page)
                if slicer.due():
                    await slicer.pause()  # the heartbeat and the leases go on meanwhile
            grace = self.worker.settings.calc_stall_grace_ms / 1000
            silent = {sym for sym, at in self.arrivals.items() if now - at > grace}
            cycles = self.core.advance(silent)
        self.m.asset_stalled.labels(asset=self.asset).set(len(self.core.stalled))
        lag = self.core.watermark_lag_ns()
        if lag is not None:
            self.m.asset_watermark_lag.labels(asset=self.asset).set(lag / 1e9)
        if cycles:
            self.reports += len(cycles)
            self.m.asset_reports.inc(len(cycles))
            if self.core.stalled:
                self.log.warning("asset_members_stalled", stalled=sorted(self.core.stalled))
            await self._emit(cycles)
        return read

    def _apply(self, symbol: str, page: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for stream_id, fields in page:
            try:
                entry = decode(fields)
            except WireFormatError as exc:
                self.decode_errors += 1
                self.m.decode_errors.inc()
                self.log.warning("entry_rejected", symbol=symbol, id=stream_id, error=str(exc))
                continue
            try:
                self.core.apply(symbol, entry)
            except Exception as exc:  # a bug must cost one entry, not the asset
                self.m.apply_errors.inc()
                self.log.error("entry_apply_failed", symbol=symbol, error=repr(exc))

    async def _emit(self, cycles: list[tuple[int, dict[str, Any]]]) -> None:
        lease = self.lease
        if not self.active or lease is None or not lease.is_valid():
            self._suppress(len(cycles))
            return
        node = self.worker.settings.node_id
        floor = self.published_floor_ms
        pipe = self.worker.client.pipeline(transaction=False)
        sent = 0
        for t_ns, report in cycles:
            t_ms = t_ns // MS
            if t_ms <= floor:
                continue
            body = orjson.dumps(with_writer(report, node, lease.token))
            cand = Candidate(self.unit, lease.token, node, t_ms, body)
            pipe.xadd(
                self.candidates,
                encode_candidate(cand),  # type: ignore[arg-type]
                maxlen=self.worker.settings.calc_candidates_maxlen,
                approximate=True,
            )
            sent += 1
        self._suppress(len(cycles) - sent)
        if not sent:
            return
        try:
            await pipe.execute()
        except RedisError as exc:
            self.m.redis_errors.labels(op="emit").inc()
            self.log.warning("emit_failed", error=repr(exc), cycles=sent)
            return
        self.candidates_emitted += sent
        self.m.candidates.inc(sent)

    def _suppress(self, count: int) -> None:
        if count:
            self.cycles_suppressed += count
            self.m.cycles_suppressed.inc(count)
