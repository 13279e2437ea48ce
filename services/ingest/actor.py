"""The Nautilus Actor: ingest's shell between the node and the feed cores.

Identical in replay and live mode. It subscribes to order book deltas and trade ticks
of every feed; for each Nautilus object the data engine delivers it takes the record
that travelled beside it on the ``SideChannel``, hands it to the feed's ``FeedCore``
and carries out what the core returns: entries go to the ``StreamWriter``, re-sync
requests to the venue client, state changes and notes to the metrics and the log.
Live, a watchdog task drives the cores' stall checks on the monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import BookType
from nautilus_trader.model.identifiers import ClientId, InstrumentId

from services.ingest import metrics
from services.ingest.core import FeedCore, Note, Out, ResyncRequest, StateChange, WrittenTail
from services.ingest.records import BookUpdate, Derivative, Record, Status, wire_fields
from services.ingest.side_channel import SideChannel
from services.ingest.writer import StreamWriter

#: How often the Actor hands its per-record counts to Prometheus.
METRICS_FLUSH_S = 0.5


class IngestActorConfig(ActorConfig, frozen=True):
    """``client_ids``: instrument id -> the data client to subscribe through."""

    client_ids: dict[str, str] = {}


class FeedShell:
    """One feed: its core, metrics, and where its outputs go."""

    def __init__(self, core: FeedCore, writer: StreamWriter, side: SideChannel, log: Any) -> None:
        self.core = core
        feed = core.feed
        self.symbol = feed.symbol
        self.instrument_id = feed.instrument_id
        self._pp, self._sp = feed.price_precision, feed.size_precision
        self.m = metrics.FeedMetrics(feed.symbol)
        self._writer = writer
        self._side = side
        self._log = log

    def record(self, record: Record, now_ns: int = 0) -> None:
        """Count one venue record and run it through the core."""
        if type(record) is BookUpdate:
            self.m.pending["snapshot" if record.snapshot else "diff"] += 1
        else:
            self.m.pending["trade"] += 1
        self.m.lag.observe((record.recv_ns - record.event_ns) / 1e9)
        self.run(self.core.on_record(record, now_ns))

    def derivative(self, record: Derivative) -> None:
        """Count one derivative record (live futures) and run it through the core."""
        self.m.pending["derivative"] += 1
        self.run(self.core.on_derivative(record))

    def run(self, outs: list[Out]) -> None:
        """Carry out what the core returned, in order.

        Stream entries are encoded only while this process writes the symbol; a hot
        standby runs its core (books, state) and skips them.
        """
        writing = self.symbol in self._writer.owned
        append = self._writer.append
        for out in outs:
            effect = _EFFECTS.get(type(out))
            if effect is not None:
                effect(self, out)
            elif writing:  # a stream entry
                append(self.symbol, *wire_fields(out, self._pp, self._sp))  # type: ignore[arg-type]

    def _resync(self, out: ResyncRequest) -> None:
        if self._side.request_resync(self.instrument_id):
            self._log.info("venue snapshot requested", symbol=self.symbol, reason=out.reason)

    def _state(self, out: StateChange) -> None:
        log = self._log.info if out.new in ("ok", "down") else self._log.warning
        log("feed state", symbol=self.symbol, state=out.new, reason=out.reason)
        self.m.state(out.old, out.new)

    def _note(self, out: Note) -> None:
        getattr(self._log, out.level)(out.event, symbol=self.symbol, **out.fields)

    def flush_metrics(self) -> None:
        core = self.core
        stats = core.sequencer.stats
        totals = {
            "level_changes": stats.level_changes,
            "gaps": stats.gaps,
            "resyncs": stats.resyncs,
            "crossed": stats.crossed,
            "covered": stats.covered,
            "duplicates": stats.duplicates,
            "stalls": core.counts.stalls,
            "checkpoints": core.counts.checkpoints,
            "backfilled": core.counts.backfilled,
        }
        skew = None if core.skew_ns is None else core.skew_ns / 1e9
        self.m.flush(totals, core.last_event_ns / 1e9, skew)


_EFFECTS: dict[type, Callable[[FeedShell, Any], None]] = {
    ResyncRequest: FeedShell._resync,
    StateChange: FeedShell._state,
    Note: FeedShell._note,
}


class IngestActor(Actor):
    """Subscribes to every feed's deltas and trades; feeds their records to the cores."""

    def __init__(
        self,
        config: IngestActorConfig,
        shells: list[FeedShell],
        side: SideChannel,
        log: Any,
    ) -> None:
        super().__init__(config)
        self._client_ids = {iid: ClientId(name) for iid, name in config.client_ids.items()}
        self._side = side
        self._slog = log
        self.shells = {shell.instrument_id: shell for shell in shells}
        self._wall = any(shell.core.config.wall_clock for shell in shells)
        self._tasks: list[asyncio.Task[None]] = []
        side.listen(self._announced)
        side.listen_direct(self._direct)

    # -- Nautilus handlers ---------------------------------------------------------------

    def on_start(self) -> None:
        for iid in self.shells:
            instrument_id = InstrumentId.from_str(iid)
            client_id = self._client_ids.get(iid)  # None: routed by venue
            self.subscribe_order_book_deltas(
                instrument_id, BookType.L2_MBP, client_id=client_id, managed=False
            )
            self.subscribe_trade_ticks(instrument_id, client_id=client_id)
        loop = asyncio.get_running_loop()
        if self._wall:
            self._start_watchdog(loop)
        self._tasks.append(
            loop.create_task(self._every(METRICS_FLUSH_S, self.flush_metrics), name="ingest-flush")
        )

    def on_stop(self) -> None:
        """Nothing to unsubscribe from explicitly: the node is stopping with us."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.flush_metrics()

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        self._deliver(deltas.instrument_id.value, deltas)

    def on_trade_tick(self, tick: TradeTick) -> None:
        self._deliver(tick.instrument_id.value, tick)

    def _deliver(self, iid: str, obj: OrderBookDeltas | TradeTick) -> None:
        shell = self.shells.get(iid)
        if shell is None:
            return
        now = time.monotonic_ns() if self._wall else 0
        try:
            leading, record = self._side.pop_until(iid, obj)
            for empty in leading:  # diffs that changed no level travel without an object
                shell.record(empty, now)
            if record is None:
                # The record that carried this object's venue ids is lost: the chain
                # cannot be checked, so the book is re-synced.
                metrics.REJECTIONS.labels(shell.symbol, "no_sequence_ids").inc()
                reason = "deltas arrived without their venue sequence ids"
                shell.run(shell.core.invalidate(reason, obj.ts_event, obj.ts_init))
                return
            shell.record(record, now)
        except Exception as exc:  # one bad message must not stop the feed
            metrics.REJECTIONS.labels(shell.symbol, "internal").inc()
            self._slog.error("message handling failed", symbol=shell.symbol, error=repr(exc))
            core = shell.core
            reason = f"internal error: {exc!r}"
            shell.run(core.invalidate(reason, core.last_event_ns, core.last_recv_ns))

    # -- outside the data engine -------------------------------------------------------

    def _announced(self, instrument_id: str, status: Status) -> None:
        """The venue client cannot reach the venue, or reconnected to it (live)."""
        shell = self.shells.get(instrument_id)
        if shell is not None:
            shell.run(shell.core.venue_status(status))

    def _direct(self, instrument_id: str, record: Derivative) -> None:
        """A derivative record from the venue client (live futures), written at once."""
        shell = self.shells.get(instrument_id)
        if shell is None:
            return
        try:
            shell.derivative(record)
        except Exception as exc:  # one bad message must not stop the feed
            metrics.REJECTIONS.labels(shell.symbol, "internal").inc()
            self._slog.error("derivative handling failed", symbol=shell.symbol, error=repr(exc))

    def end_of_feed(self, instrument_id: str, reason: str) -> None:
        """The feed ended (replay): ``unbuildable`` if it never had a book, then ``down``."""
        shell = self.shells.get(instrument_id)
        if shell is None or shell.core.ended:
            return
        for empty in self._side.drain(instrument_id):
            shell.record(empty)
        shell.run(shell.core.end(reason))
        shell.flush_metrics()

    def takeover(self, symbol: str, reason: str, written: WrittenTail | None) -> None:
        """This process now writes ``symbol`` (it was a standby for it)."""
        for shell in self.shells.values():
            if shell.symbol == symbol:
                shell.run(shell.core.takeover(reason, time.time_ns(), written))

    def flush_metrics(self) -> None:
        """Hand every feed's counts since the last flush to Prometheus."""
        for shell in self.shells.values():
            shell.flush_metrics()

    def check_stalls(self, now_ns: int, wall_ns: int) -> None:
        """Live: every feed's stall check (``now_ns`` monotonic, ``wall_ns`` Unix time)."""
        for shell in self.shells.values():
            shell.run(shell.core.check_stall(now_ns, wall_ns))
            shell.m.silence.set(shell.core.silence_ns / 1e9)

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        limits = [s.core.stall.limit_ns for s in self.shells.values() if s.core.stall.limit_ns]
        if not limits:
            return
        now = time.monotonic_ns()
        for shell in self.shells.values():
            shell.core.start(now)
        # Check a few times per shortest limit (a stall is seen at most ~25% late).
        tick_s = min(1.0, max(0.02, min(limits) / 4e9))
        self._tasks.append(
            loop.create_task(
                self._every(tick_s, lambda: self.check_stalls(time.monotonic_ns(), time.time_ns())),
                name="ingest-stall-watchdog",
            )
        )

    async def _every(self, interval_s: float, action: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                action()
            except Exception as exc:  # a periodic task must outlive one bad run
                self._slog.error("periodic task failed", error=repr(exc))
