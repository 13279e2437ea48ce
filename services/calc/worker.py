"""The calc worker shell: assignment, leases, stream reading, candidate emission.

Imperative shell around ``services.calc.analytics``: it reads entries, feeds each
symbol's ``SymbolCore`` and writes every cycle's report as a candidate while (and only
while) it holds a valid writer lease for the symbol.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import time
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from services.calc.analytics import CoreParams, Cycle, SymbolCore, with_writer
from services.calc.asset_runner import AssetRunner
from services.calc.leasing import BatchedScripts
from services.calc.metrics import CalcMetrics
from services.calc.reading import Slicer, StreamReader
from services.calc.settings import Settings
from shared import assets, keys
from shared.candidate import Candidate, encode_candidate
from shared.errors import InvalidSymbolError, WireFormatError
from shared.lease import HeldLease, LeaseClient
from shared.lifecycle import sleep_unless
from shared.membership import Membership
from shared.redis_client import RedisClient, discovered
from shared.scripts import Scripts
from shared.wire import decode

MS = 1_000_000
#: gc thresholds once started (see CalcWorker.run).
GC_THRESHOLDS = (20_000, 50, 100)


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


class SymbolRunner:
    """One assigned symbol: its core, its stream position and its writer lease.

    The symbol's stream is read by the worker's ``StreamReader`` (one XREAD for many
    symbols); the runner applies what is read (``apply_entries``) and hands its cycles to
    the worker's ``Emitter`` (``take_cycles``). Its own task only keeps the lease.
    """

    def __init__(
        self, worker: CalcWorker, symbol: str, venue: str, size_unit: str = "base"
    ) -> None:
        self.worker = worker
        self.m = worker.m
        self.symbol = symbol
        self.stream = keys.stream(symbol)
        self.stream_key = self.stream.encode()
        #: The candidate partition stream this symbol's reports go through.
        self.candidates = keys.candidates_of(symbol, worker.settings.candidate_partitions)
        self.core = SymbolCore(symbol, venue, worker.params, size_unit)
        self.lease: HeldLease | None = None
        self.active = True
        self._stopped = asyncio.Event()
        #: Set when a renewal was refused: the lease loop acquires again.
        self._lost = asyncio.Event()
        self.log = worker.log.bind(symbol=symbol)
        #: Stream id of the last entry read (bytes), None before the first read.
        self.last_id: bytes | None = None
        #: Still reading its backlog with XRANGE pages (from the checkpoint).
        self.catching_up = True
        self.first_read = True
        self._last_arrival: float | None = None
        #: Cycles computed and not yet handed to the emitter.
        self.cycles: list[Cycle] = []
        self.candidates_emitted = 0
        self.cycles_suppressed = 0
        self.decode_errors = 0
        #: Event time (ms) of the stored report when the lease was acquired.
        self.published_floor_ms = -1
        self._lag = self.m.stream_lag.labels(symbol=symbol)
        self._age = self.m.data_age.labels(symbol=symbol)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._lease_loop(), name=f"lease:{self.symbol}")

    async def stop(self) -> None:
        """Stop emitting at once, then release the lease and end the lease loop."""
        self.active = False
        self._stopped.set()
        self._lost.set()
        self.cycles = []
        lease, self.lease = self.lease, None
        if lease is not None:
            # Release at once: the successor need not wait, and anything still in flight
            # with this token is refused as stale by the publisher.
            await self._release(lease)
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), 2.0)
            self._task.cancel()
        # A lease the loop stored meanwhile (an acquire that was in flight).
        if self.lease is not None:
            await self._release(self.lease)
        self.lease = None
        for gauge in (self.m.stream_lag, self.m.data_age):
            with contextlib.suppress(KeyError):
                gauge.remove(self.symbol)

    async def _release(self, lease: HeldLease) -> None:
        try:
            await self.worker.leases.release(lease)
            self.log.info("lease_released", token=lease.token)
        except RedisError as exc:
            self.m.redis_errors.labels(op="lease_release").inc()
            self.log.warning("lease_release_failed", error=repr(exc))
        finally:
            self.worker.update_owned()

    async def _sleep(self, seconds: float) -> None:
        await sleep_unless(self._stopped, seconds)

    # --- lease ------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Acquire the lease (again after a loss); the worker renews it
        (``CalcWorker._renew_loop``, every lease of the worker in one round trip)."""
        leases = self.worker.leases
        s = self.worker.settings
        while self.active:
            if self.lease is not None:
                await self._lost.wait()
                self._lost.clear()
                continue
            try:
                lease = await leases.acquire(self.symbol)
                if lease is None:
                    self.m.lease_conflicts.inc()
                    await self._sleep(s.calc_lease_retry_ms / 1000)
                    continue
                # Cycles at or before the stored report's event time can never be
                # accepted (the publisher only takes newer reports): skip them instead
                # of sending a takeover's whole catch-up.
                stored: Any = await self.worker.client.hget(keys.report(self.symbol), "event_ms")
                self.published_floor_ms = int(stored) if stored else -1
                if not self.active:
                    await self._release(lease)
                    return
                self.lease = lease
                self.m.lease_acquisitions.inc()
                self.worker.update_owned()
                self.log.info("lease_acquired", token=lease.token)
            except RedisError as exc:
                self.m.redis_errors.labels(op="lease").inc()
                self.log.warning("lease_call_failed", error=repr(exc))
                await self._sleep(s.calc_lease_retry_ms / 1000)

    def lease_lost(self, lease: HeldLease) -> None:
        """The renewal of ``lease`` was refused (expired, or another node holds it)."""
        if self.lease is lease:
            self.lease = None
            self.m.lease_losses.inc()
            self.worker.update_owned()
            self.log.warning("lease_lost", token=lease.token)
            self._lost.set()

    # --- applying what was read ---------------------------------------------------------

    def apply_entries(
        self, batch: list[tuple[bytes, dict[bytes, bytes]]], start: int, deadline: float
    ) -> int:
        """Apply ``batch[start:]`` until done or ``time.perf_counter()`` passes
        ``deadline``; return the index to go on from. Cycles go to ``self.cycles``."""
        core = self.core
        cycles = self.cycles
        kinds = self.worker.kind_counts
        perf = time.perf_counter
        gaps_before = core.counters.sequence_gaps
        market_data = False
        i = start
        n = len(batch)
        while i < n:
            stream_id, fields = batch[i]
            i += 1
            try:
                entry = decode(fields)
            except WireFormatError as exc:
                self.decode_errors += 1
                self.m.decode_errors.inc()
                self.log.warning("entry_rejected", stream_id=stream_id.decode(), error=str(exc))
                continue
            try:
                got = core.apply(entry)
            except Exception as exc:  # a bug must cost one entry, not the symbol
                self.m.apply_errors.inc()
                self.log.error("entry_apply_failed", stream_id=stream_id.decode(), error=repr(exc))
                continue
            if got:
                cycles += got
                self.worker.event_cycles += len(got)
            kind = entry.kind
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind != "status":
                market_data = True
            if perf() >= deadline:
                break
        if market_data:
            self._last_arrival = time.monotonic()
        if core.counters.sequence_gaps > gaps_before:
            self.m.sequence_gaps.inc(core.counters.sequence_gaps - gaps_before)
            self.log.warning("sequence_gap", total=core.counters.sequence_gaps)
        if i == n:
            # How far behind the stream this symbol's reading is: the wall time since
            # the newest entry applied was appended (its id is Redis's clock in ms).
            appended_ms = int(batch[-1][0].split(b"-", 1)[0])
            self._lag.set(max(0.0, time.time() - appended_ms / 1000))
        return i

    def watchdog(self) -> None:
        """A silent feed still gets reports: advance the clock with wall time past a grace."""
        last_ns = self.core.last_event_ns
        if last_ns is None or self._last_arrival is None or not self.active:
            return
        silent_s = time.monotonic() - self._last_arrival
        grace_s = self.worker.settings.calc_stall_grace_ms / 1000
        if silent_s <= grace_s:
            return
        cycles = self.core.advance_to(last_ns + int((silent_s - grace_s) * 1e9))
        if cycles:
            self.m.cycles_stall.inc(len(cycles))
            self.cycles += cycles

    # --- emission ---------------------------------------------------------------------

    def take_cycles(self) -> list[tuple[int, bytes]] | None:
        """The pending cycles as (cycle ms, report JSON) to emit under the current lease,
        or None if none may be emitted (no valid lease, or already published)."""
        cycles, self.cycles = self.cycles, []
        if not cycles:
            return None
        fast, slow = self.m.cycle_fast, self.m.cycle_slow
        for c in cycles:
            fast.observe(c.fast_ns / 1e9)
            if c.slow_ns:
                slow.observe(c.slow_ns / 1e9)
        self._age.set(cycles[-1].report["data_age_ms"] / 1000)
        lease = self.lease
        if not self.active or lease is None or not lease.is_valid():
            self.suppress(len(cycles))
            return None
        floor = self.published_floor_ms
        node = self.worker.settings.node_id
        token = lease.token
        out = [
            (c.t_ns // MS, orjson.dumps(with_writer(c.report, node, token)))
            for c in cycles
            if c.t_ns // MS > floor
        ]
        if len(out) < len(cycles):
            self.suppress(len(cycles) - len(out))
        return out or None

    def suppress(self, count: int) -> None:
        self.cycles_suppressed += count
        self.m.cycles_suppressed.inc(count)


class Emitter:
    """Sends the workers' report candidates, in order, one pipeline per turn.

    Readers hand over (runner, lease, candidates) and go on computing; the emitter
    re-checks every lease right before sending (it may have lapsed meanwhile: those
    cycles are dropped and counted as suppressed) and sends everything queued since its
    last turn in one non-transactional pipeline. One emitter per worker, so each
    symbol's candidates reach its partition stream in cycle order.
    """

    def __init__(self, worker: CalcWorker) -> None:
        self.worker = worker
        self.m = worker.m
        self._queue: list[tuple[SymbolRunner, HeldLease, list[tuple[int, bytes]]]] = []
        self._wake = asyncio.Event()

    def put(self, runner: SymbolRunner, lease: HeldLease, items: list[tuple[int, bytes]]) -> None:
        self._queue.append((runner, lease, items))
        self._wake.set()

    def wake(self) -> None:
        """Wake the loop (to see ``stop``)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        # Ends on ``stop`` too, not only on cancellation: a cancel that lands inside a
        # redis-py call can be lost, and shutdown must not wait on this task forever.
        while not stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if stop.is_set():
                return
            queued, self._queue = self._queue, []
            try:
                await self.send(queued)
            except Exception as exc:  # never let the emitter die
                self.worker.log.exception("emit_error", error=repr(exc))

    async def send(
        self, queued: list[tuple[SymbolRunner, HeldLease, list[tuple[int, bytes]]]]
    ) -> None:
        w = self.worker
        s = w.settings
        node = s.node_id
        maxlen = s.calc_candidates_maxlen
        now = time.monotonic()
        pipe = w.client.pipeline(transaction=False)
        sent: list[tuple[SymbolRunner, int]] = []
        for runner, lease, items in queued:
            # Re-check right before sending: the lease may have lapsed since.
            if not runner.active or runner.lease is not lease or not lease.is_valid(now):
                runner.suppress(len(items))
                continue
            for t_ms, body in items:
                cand = Candidate(runner.symbol, lease.token, node, t_ms, body)
                pipe.xadd(
                    runner.candidates,
                    encode_candidate(cand),  # type: ignore[arg-type]
                    maxlen=maxlen,
                    approximate=True,
                )
            sent.append((runner, len(items)))
        if not sent:
            return
        try:
            await pipe.execute()
        except RedisError as exc:
            self.m.redis_errors.labels(op="emit").inc()
            w.log.warning("emit_failed", error=repr(exc), cycles=sum(k for _, k in sent))
            return
        for runner, count in sent:
            runner.candidates_emitted += count
        self.m.candidates.inc(sum(k for _, k in sent))


class CalcWorker:
    """Heartbeat, assignment following and one ``SymbolRunner`` per assigned symbol."""

    def __init__(
        self,
        settings: Settings,
        log: Any,
        client: RedisClient,
        blocking: RedisClient,
        metrics: CalcMetrics,
    ) -> None:
        """``client`` for commands, ``blocking`` for ``XREAD BLOCK`` (its socket timeout
        covers ``calc_xread_block_ms``); the caller owns and closes both."""
        self.settings = settings
        self.log = log
        self.m = metrics
        self.params = core_params(settings)
        self.client = client
        self.blocking = blocking
        self.scripts = Scripts(self.client)
        #: Lease calls of one event-loop turn share a round trip (``leasing.py``).
        self.lease_scripts = BatchedScripts(self.client)
        self.leases = LeaseClient(
            self.lease_scripts,
            settings.node_id,
            settings.calc_lease_ttl_ms,
            settings.calc_lease_margin_ms,
        )
        self.membership = Membership(self.client, self.scripts, settings.node_id)
        self.runners: dict[str, SymbolRunner] = {}
        #: Assigned asset units (``asset:BTC``) -> their runner (services/calc/asset_runner.py).
        self.asset_runners: dict[str, AssetRunner] = {}
        self.assignment_version: int | None = None
        #: On one Redis a single reader for every symbol; on a cluster one per hash slot.
        self.cluster = isinstance(self.client, RedisCluster)
        self.readers: dict[int, StreamReader] = {}
        self.slicer = Slicer(settings.calc_slice_ms / 1000, metrics.slice_pauses)
        self.emitter = Emitter(self)
        #: Entries applied per kind and event-driven cycles, since the last metrics flush.
        self.kind_counts: dict[str, int] = {}
        self.event_cycles = 0
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Runners being stopped (kept so shutdown waits for their lease release).
        self._stopping: set[asyncio.Task[None]] = set()
        self._reconcile_lock = asyncio.Lock()

    def update_owned(self) -> None:
        self.m.symbols_owned.set(sum(1 for r in self.runners.values() if r.lease is not None))

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        self._stop = stop
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(stop), name="heartbeat"),
            asyncio.create_task(self._assignment_loop(stop), name="assignment"),
            asyncio.create_task(self.emitter.run(stop), name="emitter"),
            asyncio.create_task(self._renew_loop(stop), name="lease-renewals"),
        ]
        # What exists now (settings, clients, Nautilus-free imports) lives as long as the
        # process: keep the collector off it. Symbol state is mostly numpy arrays and
        # int dicts (not tracked); the young generation is collected less often, as most
        # short-lived objects (reports) are freed by reference counting.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        await stop.wait()
        await self.shutdown()

    # --- reading and applying ---------------------------------------------------------

    def _reader_for(self, runner: SymbolRunner) -> StreamReader:
        slot = key_slot(runner.stream_key) if self.cluster else -1
        reader = self.readers.get(slot)
        if reader is None or reader.task is None or reader.task.done():
            name = f"slot-{slot}" if self.cluster else "all"
            reader = self.readers[slot] = StreamReader(self, name)
            assert self._stop is not None, "readers start once the worker runs"
            reader.start(self._stop)
            reader_task = reader.task
            assert reader_task is not None

            def done(_: object, slot: int = slot, reader: StreamReader = reader) -> None:
                if self.readers.get(slot) is reader:
                    del self.readers[slot]

            reader_task.add_done_callback(done)
        return reader

    async def apply(
        self, batches: list[tuple[SymbolRunner, Any]], members: list[SymbolRunner]
    ) -> None:
        """Apply one read's entries in slices; hand the cycles to the emitter as it goes."""
        async with self.slicer as slicer:
            for runner, batch in batches:
                i, n = 0, len(batch)
                while i < n and runner.active:
                    i = runner.apply_entries(batch, i, slicer.deadline)
                    if slicer.due():
                        self._hand_over()
                        await slicer.pause()
            for runner in members:
                runner.watchdog()
            self._hand_over()

    def _hand_over(self) -> None:
        """Cycles computed so far -> the emitter; entry counts -> the metrics."""
        for runner in self.runners.values():
            if runner.cycles:
                lease = runner.lease
                items = runner.take_cycles()
                if items and lease is not None:
                    self.emitter.put(runner, lease, items)
        if self.kind_counts:
            for kind, count in self.kind_counts.items():
                self.m.entries_applied.labels(kind=kind).inc(count)
            self.kind_counts = {}
        if self.event_cycles:
            self.m.cycles_event.inc(self.event_cycles)
            self.event_cycles = 0

    async def shutdown(self) -> None:
        self.log.info("calc_stopping", symbols=sorted(self.runners))
        for r in self.runners.values():
            r.active = False  # stop emitting everywhere first
        readers = [r.task for r in self.readers.values() if r.task is not None]
        tasks = [*self._tasks, *readers]
        for task in tasks:
            task.cancel()
        self.emitter.wake()
        # Bounded: a task whose cancel got lost must not hold up the lease releases.
        _, stuck = await asyncio.wait(tasks, timeout=2.0)
        if stuck:
            self.log.warning("tasks_not_stopped", tasks=sorted(t.get_name() for t in stuck))
        await asyncio.gather(
            *(r.stop() for r in self.runners.values()),
            *(r.stop() for r in self.asset_runners.values()),
            *self._stopping,
            return_exceptions=True,
        )
        self.runners.clear()
        self.asset_runners.clear()
        self.update_owned()
        self.m.symbols_assigned.set(0)
        try:
            await asyncio.wait_for(self.membership.leave(), 2.0)
        except (RedisError, TimeoutError) as exc:
            self.log.warning("leave_failed", error=repr(exc))

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        """Renew every held lease each third of the TTL, all in one round trip."""
        interval = self.settings.lease_renew_s
        # Fixed rate, timed from each round's start: a validity counts from when its
        # renewal was sent, so a slow round must not push the next one later.
        due = time.monotonic() + interval
        while not stop.is_set():
            await sleep_unless(stop, due - time.monotonic())
            due = time.monotonic() + interval
            held = [(r, r.lease) for r in self.runners.values() if r.active and r.lease]
            if not held:
                continue
            results = await asyncio.gather(
                *(self.leases.renew(lease) for _, lease in held), return_exceptions=True
            )
            failed = 0
            for (runner, lease), ok in zip(held, results, strict=True):
                if isinstance(ok, BaseException):
                    failed += 1  # kept: its validity runs out unless the next round works
                elif ok:
                    self.m.lease_renewals.inc()
                else:
                    runner.lease_lost(lease)
            if failed:
                self.m.redis_errors.labels(op="lease").inc(failed)
                self.log.warning("lease_renewals_failed", count=failed, of=len(held))

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Membership heartbeats, from their own task: the readers yield the loop every
        slice (``C8_CALC_SLICE_MS``), so a busy worker still beats on time."""
        s = self.settings
        last: float | None = None
        while not stop.is_set():
            started = time.monotonic()
            if last is not None:
                self.m.heartbeat_interval.observe(started - last)
            last = started
            try:
                await self.membership.heartbeat()
                self.m.heartbeats.inc()
            except RedisError as exc:
                self.m.redis_errors.labels(op="heartbeat").inc()
                self.log.warning("heartbeat_failed", error=repr(exc))
            jitter = random.uniform(-s.calc_heartbeat_jitter_ms, s.calc_heartbeat_jitter_ms)
            await sleep_unless(stop, max(0.02, (s.calc_heartbeat_ms + jitter) / 1000))

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
                self.m.redis_errors.labels(op="assignment").inc()
                self.log.warning("assignment_read_failed", error=repr(exc))
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                pubsub = None
                await sleep_unless(stop, 0.5)
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
                mine.add(keys.check_unit(raw_symbol.decode()))
            except (InvalidSymbolError, UnicodeDecodeError):
                self.log.warning("assignment_bad_symbol", symbol=repr(raw_symbol))
        version = int(raw_version) if raw_version else None
        async with self._reconcile_lock:
            if version != self.assignment_version:
                self.log.info("assignment_version", version=version, symbols=sorted(mine))
                self.assignment_version = version
            await self._reconcile(mine)

    async def _reconcile(self, mine: set[str]) -> None:
        await self._reconcile_assets({u for u in mine if keys.unit_asset(u) is not None})
        mine = {u for u in mine if keys.unit_asset(u) is None}
        current = set(self.runners)
        for symbol in sorted(current - mine):
            runner = self.runners.pop(symbol)
            self.log.info("symbol_unassigned", symbol=symbol)
            for reader in list(self.readers.values()):
                reader.remove(runner)
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
            self._reader_for(runner).add(runner)
        self.m.symbols_assigned.set(len(self.runners))
        self.update_owned()

    async def _reconcile_assets(self, mine: set[str]) -> None:
        """Start/stop asset runners to match the asset units assigned to this node, and
        restart one whose markets changed in the registry (a market registered after the
        asset was assigned; this runs on every assignment read, each poll interval)."""
        for unit in sorted(set(self.asset_runners) - mine):
            self.log.info("asset_unassigned", unit=unit)
            await asyncio.shield(self.asset_runners.pop(unit).stop())
        if not mine:
            return
        registry: Any = await self.client.hgetall(keys.SYMBOLS)
        known = assets.assets({k.decode(): v for k, v in registry.items()})
        for unit, running in sorted(self.asset_runners.items()):
            members = known.get(keys.unit_asset(unit) or "")
            if members is None or [m.symbol for m in members] != running.members:
                self.log.info(
                    "asset_members_changed",
                    unit=unit,
                    members=running.members,
                    now=None if members is None else [m.symbol for m in members],
                )
                await asyncio.shield(self.asset_runners.pop(unit).stop())
        for unit in sorted(mine - set(self.asset_runners)):
            asset = keys.unit_asset(unit)
            assert asset is not None
            members = known.get(asset)
            if members is None:
                self.log.warning("asset_without_members", unit=unit)
                continue
            runner = AssetRunner(self, asset, members)
            self.asset_runners[unit] = runner
            self.log.info("asset_assigned", unit=unit, members=runner.members)
            runner.start()
