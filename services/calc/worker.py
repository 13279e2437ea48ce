"""The calc worker shell: assignment, leases, stream reading, candidate emission.

Imperative shell around ``services.calc.analytics``: it reads entries, feeds each
symbol's ``SymbolCore`` and writes every cycle's report as a candidate while (and only
while) it holds a valid writer lease for the symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from services.calc import metrics as m
from services.calc.analytics import CoreParams, Cycle, SymbolCore, with_writer
from services.calc.settings import Settings
from shared import keys
from shared.candidate import Candidate, encode_candidate
from shared.errors import InvalidSymbolError, WireFormatError
from shared.lease import HeldLease, LeaseClient
from shared.membership import Membership
from shared.redis_client import RedisClient, discovered, make_redis
from shared.scripts import Scripts
from shared.wire import decode

MS = 1_000_000


def core_params(settings: Settings) -> CoreParams:
    return CoreParams(
        fast_cycle_ns=settings.calc_fast_cycle_ms * MS,
        slow_cycle_ns=settings.calc_slow_cycle_ms * MS,
    )


def parse_symbol_info(raw: bytes | str | None, default_venue: str) -> tuple[str, str]:
    """(venue, size unit) from a keys.SYMBOLS value ({"venue": ..., "size_unit": ...}).

    Venue: BINANCE or BYBIT (``default_venue`` if missing or unknown); size unit:
    ``base`` unless the registry says otherwise (e.g. contracts of an inverse perp).
    """
    if raw is None:
        return default_venue, "base"
    try:
        info = json.loads(raw)
        venue = str(info.get("venue", "")).upper()
        size_unit = str(info.get("size_unit") or "base")
    except (ValueError, AttributeError):
        return default_venue, "base"
    for known in ("BINANCE", "BYBIT"):
        if venue.startswith(known):
            return known, size_unit
    return default_venue, size_unit


def _xread_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values())))
    return list(reply[0][1])


def _exclusive(stream_id: bytes) -> str:
    return "(" + stream_id.decode()


class SymbolRunner:
    """One assigned symbol: its core, its stream reader and its writer lease."""

    def __init__(
        self, worker: CalcWorker, symbol: str, venue: str, size_unit: str = "base"
    ) -> None:
        self.worker = worker
        self.symbol = symbol
        #: The candidate partition stream this symbol's reports go through.
        self.candidates = keys.candidates_of(symbol, worker.settings.candidate_partitions)
        self.core = SymbolCore(symbol, venue, worker.params, size_unit)
        self.lease: HeldLease | None = None
        self.active = True
        self._stopped = asyncio.Event()
        self.log = worker.log.bind(symbol=symbol)
        #: Stream id of the last entry read (bytes), None before the first read.
        self.last_id: bytes | None = None
        self._last_arrival: float | None = None
        self.candidates_emitted = 0
        self.cycles_suppressed = 0
        self.decode_errors = 0
        #: Event time (ms) of the stored report when the lease was acquired.
        self.published_floor_ms = -1
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name=f"lease:{self.symbol}"),
            asyncio.create_task(self._read_loop(), name=f"read:{self.symbol}"),
        ]

    async def stop(self) -> None:
        """Stop emitting at once, then release the lease and end both loops."""
        self.active = False
        self._stopped.set()
        lease, self.lease = self.lease, None
        if lease is not None:
            # Release at once, before waiting for the read loop (it may sit in XREAD
            # BLOCK): the successor need not wait, and anything still in flight with
            # this token is refused as stale by the publisher.
            await self._release(lease)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 2.0)
        for task in self._tasks:
            task.cancel()
        # A lease the loop stored meanwhile (an acquire that was in flight).
        if self.lease is not None:
            await self._release(self.lease)
        self.lease = None
        for gauge in (m.STREAM_LAG, m.DATA_AGE):
            with contextlib.suppress(KeyError):
                gauge.remove(self.symbol)

    async def _release(self, lease: HeldLease) -> None:
        try:
            await self.worker.leases.release(lease)
            self.log.info("lease_released", token=lease.token)
        except RedisError as exc:
            m.REDIS_ERRORS.labels(op="lease_release").inc()
            self.log.warning("lease_release_failed", error=repr(exc))
        finally:
            self.worker.update_owned()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    # --- lease ------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        leases = self.worker.leases
        s = self.worker.settings
        while self.active:
            try:
                if self.lease is None:
                    lease = await leases.acquire(self.symbol)
                    if lease is None:
                        m.LEASE_CONFLICTS.inc()
                        await self._sleep(s.calc_lease_retry_ms / 1000)
                        continue
                    # Cycles at or before the stored report's event time can never be
                    # accepted (the publisher only takes newer reports): skip them
                    # instead of sending a takeover's whole catch-up.
                    stored: Any = await self.worker.client.hget(
                        keys.report(self.symbol), "event_ms"
                    )
                    self.published_floor_ms = int(stored) if stored else -1
                    if not self.active:
                        await self._release(lease)
                        return
                    self.lease = lease
                    m.LEASE_ACQUISITIONS.inc()
                    self.worker.update_owned()
                    self.log.info("lease_acquired", token=lease.token)
                else:
                    await self._sleep(s.lease_renew_s)
                    lease = self.lease
                    if not self.active or lease is None:
                        return
                    if await leases.renew(lease):
                        m.LEASE_RENEWALS.inc()
                    else:
                        m.LEASE_LOSSES.inc()
                        self.lease = None
                        self.worker.update_owned()
                        self.log.warning("lease_lost", token=lease.token)
            except RedisError as exc:
                m.REDIS_ERRORS.labels(op="lease").inc()
                self.log.warning("lease_call_failed", error=repr(exc))
                await self._sleep(s.calc_lease_retry_ms / 1000)

    # --- reading ----------------------------------------------------------------------

    async def _start_id(self) -> bytes:
        """Where a takeover starts: the newest snapshot's stream id, else the beginning."""
        ckpt: Any = await self.worker.client.get(keys.checkpoint(self.symbol))
        return bytes(ckpt) if ckpt else b"0-0"

    async def _read_loop(self) -> None:
        w = self.worker
        s = w.settings
        stream = keys.stream(self.symbol)
        catching_up = True
        first_read = True
        while self.active:
            try:
                if self.last_id is None:
                    self.last_id = await self._start_id()
                if catching_up:
                    lo = self.last_id.decode() if first_read else _exclusive(self.last_id)
                    batch: Any = await w.client.xrange(
                        stream, min=lo, max="+", count=s.calc_xread_count
                    )
                    first_read = False
                    if len(batch) < s.calc_xread_count:
                        catching_up = False
                else:
                    reply: Any = await w.blocking.xread(
                        {stream: self.last_id},
                        count=s.calc_xread_count,
                        block=s.calc_xread_block_ms,
                    )
                    batch = _xread_entries(reply)
                cycles = self._apply_batch(batch)
                cycles.extend(self._watchdog())
                if cycles:
                    await self._emit(cycles)
            except RedisError as exc:
                m.REDIS_ERRORS.labels(op="read").inc()
                self.log.warning("stream_read_failed", error=repr(exc))
                await self._sleep(0.2)
            except Exception as exc:
                self.log.exception("read_loop_error", error=repr(exc))
                await self._sleep(0.5)

    def _apply_batch(self, batch: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Cycle]:
        cycles: list[Cycle] = []
        if not batch:
            return cycles
        core = self.core
        gaps_before = core.counters.sequence_gaps
        for stream_id, fields in batch:
            self.last_id = stream_id
            try:
                entry = decode(fields)
            except WireFormatError as exc:
                self.decode_errors += 1
                m.DECODE_ERRORS.inc()
                self.log.warning("entry_rejected", stream_id=stream_id.decode(), error=str(exc))
                continue
            try:
                cycles.extend(core.apply(entry))
            except Exception as exc:  # a bug must cost one entry, not the symbol
                m.APPLY_ERRORS.inc()
                self.log.error("entry_apply_failed", stream_id=stream_id.decode(), error=repr(exc))
                continue
            m.ENTRIES_APPLIED.labels(kind=entry.kind).inc()
            if entry.kind != "status":
                self._last_arrival = time.monotonic()
            m.STREAM_LAG.labels(symbol=self.symbol).set(max(0.0, time.time() - entry.recv_ns / 1e9))
        if core.counters.sequence_gaps > gaps_before:
            m.SEQUENCE_GAPS.inc(core.counters.sequence_gaps - gaps_before)
            self.log.warning("sequence_gap", total=core.counters.sequence_gaps)
        m.CYCLES.labels(trigger="event").inc(len(cycles))
        return cycles

    def _watchdog(self) -> list[Cycle]:
        """A silent feed still gets reports: advance the clock with wall time past a grace."""
        last_ns = self.core.last_event_ns
        if last_ns is None or self._last_arrival is None:
            return []
        silent_s = time.monotonic() - self._last_arrival
        grace_s = self.worker.settings.calc_stall_grace_ms / 1000
        if silent_s <= grace_s:
            return []
        cycles = self.core.advance_to(last_ns + int((silent_s - grace_s) * 1e9))
        m.CYCLES.labels(trigger="stall").inc(len(cycles))
        return cycles

    # --- emission ---------------------------------------------------------------------

    async def _emit(self, cycles: list[Cycle]) -> None:
        for c in cycles:
            m.CYCLE_SECONDS.labels(cycle="fast").observe(c.fast_ns / 1e9)
            if c.slow_ns:
                m.CYCLE_SECONDS.labels(cycle="slow").observe(c.slow_ns / 1e9)
        m.DATA_AGE.labels(symbol=self.symbol).set(cycles[-1].report["data_age_ms"] / 1000)
        lease = self.lease
        if not self.active or lease is None or not lease.is_valid():
            self.cycles_suppressed += len(cycles)
            m.CYCLES_SUPPRESSED.inc(len(cycles))
            return
        floor = self.published_floor_ms
        superseded = sum(1 for c in cycles if c.t_ns // MS <= floor)
        if superseded:
            self.cycles_suppressed += superseded
            m.CYCLES_SUPPRESSED.inc(superseded)
            cycles = [c for c in cycles if c.t_ns // MS > floor]
            if not cycles:
                return
        w = self.worker
        node = w.settings.node_id
        pipe = w.client.pipeline(transaction=False)
        for c in cycles:
            body = orjson.dumps(with_writer(c.report, node, lease.token))
            cand = Candidate(self.symbol, lease.token, node, c.t_ns // MS, body)
            pipe.xadd(
                self.candidates,
                encode_candidate(cand),  # type: ignore[arg-type]
                maxlen=w.settings.calc_candidates_maxlen,
                approximate=True,
            )
        # Re-check right before sending: the lease may have lapsed while we computed.
        if not self.active or not lease.is_valid():
            self.cycles_suppressed += len(cycles)
            m.CYCLES_SUPPRESSED.inc(len(cycles))
            return
        try:
            await pipe.execute()
        except RedisError as exc:
            m.REDIS_ERRORS.labels(op="emit").inc()
            self.log.warning("emit_failed", error=repr(exc), cycles=len(cycles))
            return
        self.candidates_emitted += len(cycles)
        m.CANDIDATES.inc(len(cycles))


class CalcWorker:
    """Heartbeat, assignment following and one ``SymbolRunner`` per assigned symbol."""

    def __init__(self, settings: Settings, log: Any) -> None:
        self.settings = settings
        self.log = log
        self.params = core_params(settings)
        self.client: RedisClient = make_redis(settings)
        self.blocking: RedisClient = make_redis(
            settings, blocking_ms=settings.calc_xread_block_ms + 1000
        )
        self.scripts = Scripts(self.client)
        self.leases = LeaseClient(
            self.scripts,
            settings.node_id,
            settings.calc_lease_ttl_ms,
            settings.calc_lease_margin_ms,
        )
        self.membership = Membership(self.client, self.scripts, settings.node_id)
        self.runners: dict[str, SymbolRunner] = {}
        self.assignment_version: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Runners being stopped (kept so shutdown waits for their lease release).
        self._stopping: set[asyncio.Task[None]] = set()
        self._reconcile_lock = asyncio.Lock()

    def update_owned(self) -> None:
        m.SYMBOLS_OWNED.set(sum(1 for r in self.runners.values() if r.lease is not None))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        self.log.info("calc_started", settings=self.settings.model_dump(exclude={"redis_url"}))
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(stop), name="heartbeat"),
            asyncio.create_task(self._assignment_loop(stop), name="assignment"),
        ]
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        self.log.info("calc_stopping", symbols=sorted(self.runners))
        for r in self.runners.values():
            r.active = False  # stop emitting everywhere first
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(r.stop() for r in self.runners.values()), *self._stopping, return_exceptions=True
        )
        self.runners.clear()
        self.update_owned()
        m.SYMBOLS_ASSIGNED.set(0)
        try:
            await asyncio.wait_for(self.membership.leave(), 2.0)
        except (RedisError, TimeoutError) as exc:
            self.log.warning("leave_failed", error=repr(exc))
        await self.client.aclose()
        await self.blocking.aclose()
        self.log.info("calc_stopped")

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        s = self.settings
        while not stop.is_set():
            try:
                await self.membership.heartbeat()
                m.HEARTBEATS.inc()
            except RedisError as exc:
                m.REDIS_ERRORS.labels(op="heartbeat").inc()
                self.log.warning("heartbeat_failed", error=repr(exc))
            jitter = random.uniform(-s.calc_heartbeat_jitter_ms, s.calc_heartbeat_jitter_ms)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.02, (s.calc_heartbeat_ms + jitter) / 1000)
                )

    async def _assignment_loop(self, stop: asyncio.Event) -> None:
        """Re-read the assignment on every pub/sub push, and every poll interval anyway."""
        poll_s = self.settings.calc_assignment_poll_ms / 1000
        pubsub = None
        last_read = 0.0
        while not stop.is_set():
            try:
                # The poll does not depend on the subscription: while the node serving
                # the channel is down, the assignment is still read every poll interval.
                if time.monotonic() - last_read >= poll_s:
                    last_read = time.monotonic()
                    await self.refresh_assignment()
                if pubsub is None:
                    pubsub = (await discovered(self.blocking)).pubsub()
                    await pubsub.subscribe(keys.ASSIGNMENT_CHANNEL)
                    last_read = 0.0  # read at once after (re)subscribing: pushes may be missed
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.25)
                if msg is not None and msg.get("type") == "message":
                    last_read = time.monotonic()
                    await self.refresh_assignment()
            except RedisError as exc:
                m.REDIS_ERRORS.labels(op="assignment").inc()
                self.log.warning("assignment_read_failed", error=repr(exc))
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                pubsub = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def refresh_assignment(self) -> None:
        """Read the assignment hash and start/stop symbol runners to match it."""
        node = self.settings.node_id.encode()
        raw_version = await self.client.get(keys.ASSIGNMENT_VERSION)
        table: Any = await self.client.hgetall(keys.ASSIGNMENT)
        mine: set[str] = set()
        for raw_symbol, owner in table.items():
            if owner != node:
                continue
            try:
                mine.add(keys.check_symbol(raw_symbol.decode()))
            except (InvalidSymbolError, UnicodeDecodeError):
                self.log.warning("assignment_bad_symbol", symbol=repr(raw_symbol))
        version = int(raw_version) if raw_version else None
        async with self._reconcile_lock:
            if version != self.assignment_version:
                self.log.info("assignment_version", version=version, symbols=sorted(mine))
                self.assignment_version = version
            await self._reconcile(mine)

    async def _reconcile(self, mine: set[str]) -> None:
        current = set(self.runners)
        for symbol in sorted(current - mine):
            runner = self.runners.pop(symbol)
            self.log.info("symbol_unassigned", symbol=symbol)
            # Its own task: a cancelled reconcile (shutdown) must not skip the release.
            stopping = asyncio.create_task(runner.stop())
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
            await asyncio.shield(stopping)
        for symbol in sorted(mine - current):
            venue, size_unit = parse_symbol_info(
                await self.client.hget(keys.SYMBOLS, symbol),
                self.settings.calc_default_venue.upper(),
            )
            runner = SymbolRunner(self, symbol, venue, size_unit)
            self.runners[symbol] = runner
            self.log.info("symbol_assigned", symbol=symbol, venue=venue, size_unit=size_unit)
            runner.start()
        m.SYMBOLS_ASSIGNED.set(len(self.runners))
        self.update_owned()
