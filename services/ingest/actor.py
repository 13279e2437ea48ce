"""The Nautilus Actor that turns book deltas and trades into stream entries.

Identical in replay and live mode: it subscribes to order book deltas and trade ticks
of every feed, runs each book through the ``BookSequencer`` (the validated book it also
re-emits as checkpoint snapshots) and appends wire entries (shared/wire.py) to the
symbol's Redis Stream through the ``StreamWriter``.

Stalls (a book feed silent for longer than its limit, ``stall.py``) are decided on the
clock of the mode:

* ``stall_clock="wall"`` (live): a watchdog task started in ``on_start`` checks the
  monotonic clock; a stall writes ``status: degraded``, drops the sequencer's book and
  asks the data client for a fresh snapshot (the gap path, with its back-off), again
  every limit while the feed stays silent. The snapshot brings ``snap``; ``ok`` comes
  with it when it arrived over the socket (Bybit), else (a REST snapshot) only with the
  first live diff applied on top of it (``_hold_ok_until_flow``).
* ``stall_clock="event"`` (replay, offline): each message of the symbol advances its
  exchange clock; a silence over the limit writes ``status: degraded`` stamped at the
  stall's onset + limit. The book is kept: the recorded sequence chain is authoritative,
  so when book messages resume with the chain intact ``status: ok`` follows; a broken
  chain is a gap (``resync``) as always.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from nautilus_trader.common.actor import Actor
from nautilus_trader.config import ActorConfig
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.enums import AggressorSide, BookType
from nautilus_trader.model.identifiers import ClientId, InstrumentId

from services.ingest import metrics
from services.ingest.convert import OffGridError, book_update, scale_raw
from services.ingest.feeds import Feed
from services.ingest.parsing import BookMsg, TradeMsg
from services.ingest.sequencer import (
    BookSequencer,
    DeltaOut,
    Output,
    Rule,
    SequencerStats,
    SnapOut,
    StatusOut,
)
from services.ingest.side_channel import SideChannel
from services.ingest.stall import StallWatch, stall_limit_ns
from services.ingest.writer import StreamWriter
from shared import wire

_SIDES = {AggressorSide.BUYER: "B", AggressorSide.SELLER: "S"}


#: How often the Actor hands its per-message counts to Prometheus.
METRICS_FLUSH_S = 0.5

#: Weight of the newest sample in the smoothed clock skew (~ the last 100 messages).
SKEW_ALPHA = 0.01


def smooth_skew(previous: float | None, sample_ns: int, alpha: float = SKEW_ALPHA) -> float:
    """Exponentially weighted mean of receive - exchange time (the first sample starts it)."""
    if previous is None:
        return float(sample_ns)
    return previous + alpha * (sample_ns - previous)


class IngestActorConfig(ActorConfig, frozen=True):
    """``client_ids``: instrument id -> the data client to subscribe through."""

    client_ids: dict[str, str] = {}
    checkpoint_interval_s: float = 30.0
    snapshot_wait_s: float = 10.0
    #: Expected maximum book silence per symbol (0 = off) and per-symbol overrides.
    stall_after_s: float = 10.0
    stall_after: dict[str, float] = {}
    #: ``event``: stalls on exchange time (replay); ``wall``: watchdog on the wall clock (live).
    stall_clock: Literal["event", "wall"] = "event"


@dataclass
class FeedState:
    """Per-symbol state of the Actor."""

    feed: Feed
    sequencer: BookSequencer
    stall: StallWatch
    last_checkpoint_ns: int | None = None
    last_event_ns: int = 0
    last_recv_ns: int = 0
    state: str = "waiting"
    synced_stats: SequencerStats = field(default_factory=SequencerStats)
    ended: bool = False
    #: Live: a stall was declared and no live book update has followed yet. A REST
    #: snapshot rebuilds the book but does not end this (the socket may still be dead):
    #: ``ok`` waits for the first live diff applied on top of it.
    await_flow: bool = False
    #: Smoothed receive - exchange time, ns (None until the first message).
    skew_ns: float | None = None
    #: Labelled metric children, looked up once (``labels()`` costs more than ``inc()``).
    m: FeedMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.m = FeedMetrics(self.feed.symbol)


class FeedMetrics:
    """One symbol's labelled Prometheus children, and the hot-path counts not yet in them.

    Per message the Actor only bumps plain ints (a ``Counter.inc`` takes a lock and
    costs ~1 µs, several per message); ``flush`` hands them to Prometheus. The Actor
    flushes every ``METRICS_FLUSH_S`` and when a feed ends, so a scrape is at most that
    much behind.
    """

    def __init__(self, symbol: str) -> None:
        self.snapshot = metrics.MESSAGES.labels(symbol, "snapshot")
        self.diff = metrics.MESSAGES.labels(symbol, "diff")
        self.trade = metrics.MESSAGES.labels(symbol, "trade")
        self.event_time = metrics.REPLAY_EVENT_TIME.labels(symbol)
        self.level_changes = metrics.LEVEL_CHANGES.labels(symbol)
        self.gaps = metrics.GAPS.labels(symbol)
        self.resyncs = metrics.RESYNCS.labels(symbol)
        self.crossed = metrics.CROSSED.labels(symbol)
        self.covered = metrics.COVERED.labels(symbol)
        self.duplicates = metrics.DUPLICATES.labels(symbol)
        self.skew = metrics.CLOCK_SKEW.labels(symbol)
        self.stalls = metrics.STALLS.labels(symbol)
        self.silence = metrics.BOOK_SILENCE.labels(symbol)
        self.lag = metrics.LAG.labels(symbol)
        self.snapshots_pending = 0
        self.diffs_pending = 0
        self.trades_pending = 0

    def flush(self) -> None:
        """Add the pending message counts to the counters."""
        if self.snapshots_pending:
            self.snapshot.inc(self.snapshots_pending)
            self.snapshots_pending = 0
        if self.diffs_pending:
            self.diff.inc(self.diffs_pending)
            self.diffs_pending = 0
        if self.trades_pending:
            self.trade.inc(self.trades_pending)
            self.trades_pending = 0


class IngestActor(Actor):
    """Subscribes to every feed's deltas and trades; appends wire entries to Redis."""

    def __init__(
        self,
        config: IngestActorConfig,
        feeds: list[Feed],
        side: SideChannel,
        writer: StreamWriter,
        log: Any,
    ) -> None:
        super().__init__(config)
        self._client_ids = {iid: ClientId(name) for iid, name in config.client_ids.items()}
        self._interval_ns = int(config.checkpoint_interval_s * 1e9)
        self._side = side
        self._writer = writer
        self._slog = log
        self._wall = config.stall_clock == "wall"
        self._watchdog: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._feeds: dict[str, FeedState] = {}
        for feed in feeds:
            seq = BookSequencer(
                Rule.FUTURES if feed.is_futures else Rule.NEXT_ID,
                snapshot_wait_ns=int(config.snapshot_wait_s * 1e9),
            )
            limit = stall_limit_ns(feed.symbol, config.stall_after_s, config.stall_after)
            self._feeds[feed.instrument_id] = FeedState(feed, seq, StallWatch(limit))
            metrics.FEED_STATE.labels(feed.symbol, "waiting").set(1)

    # -- Nautilus handlers ---------------------------------------------------------------

    def on_start(self) -> None:
        for iid in self._feeds:
            instrument_id = InstrumentId.from_str(iid)
            client_id = self._client_ids.get(iid)  # None: routed by venue
            self.subscribe_order_book_deltas(
                instrument_id, BookType.L2_MBP, client_id=client_id, managed=False
            )
            self.subscribe_trade_ticks(instrument_id, client_id=client_id)
        if self._wall:
            self._start_watchdog()
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_every(METRICS_FLUSH_S), name="ingest-metrics-flush"
        )

    def on_stop(self) -> None:
        """Nothing to unsubscribe from explicitly: the node is stopping with us."""
        for task in (self._watchdog, self._flusher):
            if task is not None:
                task.cancel()
        self._watchdog = self._flusher = None
        self.flush_metrics()

    async def _flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush_metrics()
            except Exception as exc:  # metrics must never stop the feed
                self._slog.error("metrics flush failed", error=repr(exc))

    def on_order_book_deltas(self, deltas: OrderBookDeltas) -> None:
        try:
            self._on_deltas(deltas)
        except Exception as exc:  # one bad message must not stop the feed
            self._internal_error("deltas", deltas.instrument_id.value, exc)

    def on_trade_tick(self, tick: TradeTick) -> None:
        try:
            self._on_trade(tick)
        except Exception as exc:
            self._internal_error("trade", tick.instrument_id.value, exc)

    def _internal_error(self, what: str, iid: str, exc: Exception) -> None:
        fs = self._feeds.get(iid)
        symbol = fs.feed.symbol if fs else iid
        metrics.REJECTIONS.labels(symbol, "internal").inc()
        self._slog.error("message handling failed", symbol=symbol, kind=what, error=repr(exc))
        if fs is not None:
            self._emit(fs, fs.sequencer.invalidate(f"internal error on {what}", 0, 0))

    def _on_deltas(self, deltas: OrderBookDeltas) -> None:
        iid = deltas.instrument_id.value
        fs = self._feeds.get(iid)
        if fs is None:
            return
        leading, msg = self._side.pop_until(iid, deltas)
        for empty in leading:
            self._book(fs, empty)
        if not isinstance(msg, BookMsg):
            self._lost(fs, deltas.ts_event, deltas.ts_init)
            return
        self._book(fs, msg)

    def _on_trade(self, tick: TradeTick) -> None:
        iid = tick.instrument_id.value
        fs = self._feeds.get(iid)
        if fs is None:
            return
        leading, msg = self._side.pop_until(iid, tick)
        for empty in leading:
            self._book(fs, empty)
        if isinstance(msg, TradeMsg):
            # The parser's exact ns: Nautilus's millis_to_nanos goes through a double.
            self._trade(fs, tick, msg.liq, msg.event_ns, msg.recv_ns, msg.px, msg.sz)
        else:
            self._trade(fs, tick, False, tick.ts_event, tick.ts_init)

    # -- replay end --------------------------------------------------------------------

    def end_of_feed(self, instrument_id: str, reason: str) -> None:
        """The feed ended: publish ``unbuildable`` if it never had a book, then ``down``."""
        fs = self._feeds.get(instrument_id)
        if fs is None or fs.ended:
            return
        for empty in self._side.drain(instrument_id):
            self._book(fs, empty)
        fs.ended = True
        outs: list[Output] = list(fs.sequencer.finish(fs.last_event_ns, fs.last_recv_ns))
        outs.append(StatusOut("down", reason, fs.last_event_ns, fs.last_recv_ns))
        self._emit(fs, outs)
        self._flush(fs)

    def feed_states(self) -> dict[str, FeedState]:
        return {fs.feed.symbol: fs for fs in self._feeds.values()}

    # -- internals ---------------------------------------------------------------------

    def _book(self, fs: FeedState, msg: BookMsg) -> None:
        feed = fs.feed
        if msg.snapshot:
            fs.m.snapshots_pending += 1
        else:
            fs.m.diffs_pending += 1
        fs.m.lag.observe((msg.recv_ns - msg.event_ns) / 1e9)
        try:
            update = book_update(msg, feed.price_precision, feed.size_precision)
        except OffGridError as exc:
            # A level we cannot represent exactly would corrupt the book: count it and
            # treat the message as lost (the sequencer sees the break on the next diff).
            metrics.REJECTIONS.labels(feed.symbol, "off_grid").inc()
            self._slog.warning("off-grid book message dropped", symbol=feed.symbol, error=str(exc))
            return
        self._touch(fs, msg.event_ns, msg.recv_ns)
        if self._wall:
            now = time.monotonic_ns()
        else:
            now = msg.event_ns
            self._stall_on_event_time(fs, msg.event_ns, msg.recv_ns)
        if fs.await_flow and msg.snapshot and not msg.rest:
            fs.await_flow = False  # a snapshot over the socket (Bybit): the feed flows
        outs = fs.sequencer.on_update(update)
        if fs.await_flow:
            outs = self._hold_ok_until_flow(fs, outs)
        self._emit(fs, outs)
        if not msg.rest:  # only the venue's feed ends a silence, not our own REST fetch
            silence = fs.stall.book(now)
            if silence is not None:
                self._stall_over(fs, outs, silence, msg.event_ns, msg.recv_ns)
        self._maybe_checkpoint(fs, msg.event_ns, msg.recv_ns)

    def _hold_ok_until_flow(self, fs: FeedState, outs: list[Output]) -> list[Output]:
        """After a live stall: ``ok`` only once a live diff continues the rebuilt book.

        A REST snapshot alone says the book was right when fetched, not that updates
        arrive; the symbol stays ``degraded`` (with that reason) until one does.
        """
        held: list[Output] = []
        flowing = any(isinstance(o, DeltaOut) for o in outs)
        for out in outs:
            if isinstance(out, StatusOut) and out.state == "ok":
                if not flowing:
                    reason = "book rebuilt from a REST snapshot; waiting for live updates"
                    held.append(StatusOut("degraded", reason, out.event_ns, out.recv_ns))
                continue
            held.append(out)
            if fs.await_flow and isinstance(out, DeltaOut):
                fs.await_flow = False
                reason = "live book updates resumed after the stall"
                held.append(StatusOut("ok", reason, out.event_ns, out.recv_ns))
        return held

    def _lost(self, fs: FeedState, event_ns: int, recv_ns: int) -> None:
        """Deltas without their venue ids: the chain cannot be checked, so resync."""
        metrics.REJECTIONS.labels(fs.feed.symbol, "no_sequence_ids").inc()
        reason = "deltas arrived without their venue sequence ids"
        self._emit(fs, fs.sequencer.invalidate(reason, event_ns, recv_ns))

    def _trade(
        self,
        fs: FeedState,
        tick: TradeTick,
        liq: bool,
        event_ns: int,
        recv_ns: int,
        px: int | None = None,
        sz: int | None = None,
    ) -> None:
        feed = fs.feed
        fs.m.trades_pending += 1
        fs.m.lag.observe((recv_ns - event_ns) / 1e9)
        if not self._wall:
            self._stall_on_event_time(fs, event_ns, recv_ns)
        try:
            if px is None or sz is None:  # no parser ints beside the tick: read it
                px = scale_raw(tick.price.raw, feed.price_precision)
                sz = scale_raw(tick.size.raw, feed.size_precision)
        except OffGridError as exc:
            metrics.REJECTIONS.labels(feed.symbol, "off_grid").inc()
            self._slog.warning("off-grid trade dropped", symbol=feed.symbol, error=str(exc))
            return
        payload = wire.TradePayload(
            id=tick.trade_id.value,
            px=px,
            sz=sz,
            pp=feed.price_precision,
            sp=feed.size_precision,
            side=_SIDES.get(tick.aggressor_side, ""),  # type: ignore[arg-type]
            liq=liq,
        )
        self._writer.append(feed.symbol, "trade", wire.encode(payload, event_ns, recv_ns))
        self._touch(fs, event_ns, recv_ns)
        self._maybe_checkpoint(fs, event_ns, recv_ns)

    # -- stalls ------------------------------------------------------------------------

    def _stall_on_event_time(self, fs: FeedState, event_ns: int, recv_ns: int) -> None:
        """Replay: has this symbol's book been silent too long at ``event_ns``?

        Only a validated book can go stale; without one the symbol is already not ``ok``.
        """
        if fs.sequencer.phase != "ok":
            return
        last = fs.stall.last_book_ns
        at = fs.stall.open_if_due(event_ns)
        if at is None or last is None:
            return
        limit_s = (at - last) / 1e9
        reason = f"stall: no book update for {limit_s:g} s (expected at most {limit_s:g} s)"
        # Stamped when the silence crossed the limit; received with the message that showed it.
        status = StatusOut("degraded", reason, at, recv_ns)
        fs.m.stalls.inc()
        self._emit(fs, [status])

    def _stall_over(
        self, fs: FeedState, outs: list[Output], silence_ns: int, event_ns: int, recv_ns: int
    ) -> None:
        """Book messages are back after a stall: ``ok`` if the book is intact.

        Replay keeps its book through a stall, so a message that continues the chain
        proves nothing was lost. In live mode the stall dropped the book: the ``ok``
        comes with the fresh snapshot (from the sequencer), not from here.
        """
        rebuilt = any(isinstance(o, StatusOut) and o.state == "ok" for o in outs)
        self._slog.info(
            "book updates resumed", symbol=fs.feed.symbol, silence_s=round(silence_ns / 1e9, 3)
        )
        if fs.sequencer.phase != "ok" or rebuilt:
            return
        reason = f"book updates resumed after {silence_ns / 1e9:.3f} s; sequence chain intact"
        self._emit(fs, [StatusOut("ok", reason, event_ns, recv_ns)])

    def _start_watchdog(self) -> None:
        limits = [fs.stall.limit_ns for fs in self._feeds.values() if fs.stall.limit_ns]
        if not limits:
            return
        now = time.monotonic_ns()
        for fs in self._feeds.values():
            fs.stall.start(now)  # a feed that never speaks stalls too
        # Check a few times per shortest limit (a stall is seen at most ~25% late).
        tick_s = min(1.0, max(0.02, min(limits) / 4e9))
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch_stalls(tick_s), name="ingest-stall-watchdog"
        )

    async def _watch_stalls(self, tick_s: float) -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                self.check_stalls(time.monotonic_ns(), time.time_ns())
            except Exception as exc:  # the watchdog must outlive one bad check
                self._slog.error("stall check failed", error=repr(exc))

    def check_stalls(self, now_ns: int, wall_ns: int) -> None:
        """Live: open a stall on every feed silent beyond its limit; re-sync it.

        ``now_ns``: monotonic clock (the one ``_book`` records); ``wall_ns``: Unix time
        for the status entry's receive time. A feed that stays silent gets a new re-sync
        request every limit (the data client's back-off spaces them further).
        """
        for fs in self._feeds.values():
            watch = fs.stall
            if fs.ended or watch.limit_ns is None:
                continue
            silence = watch.silence_ns(now_ns)
            fs.m.silence.set(silence / 1e9)
            if watch.open_if_due(now_ns) is not None:
                limit_s = watch.limit_ns / 1e9
                reason = (
                    f"stall: no book update for {silence / 1e9:.1f} s "
                    f"(expected at most {limit_s:g} s)"
                )
                fs.m.stalls.inc()
                self._slog.warning(
                    "book feed stalled",
                    symbol=fs.feed.symbol,
                    silence_s=round(silence / 1e9, 3),
                    limit_s=limit_s,
                )
                # Exchange time now, estimated from the receive clock and the skew.
                event_ns = wall_ns - int(fs.skew_ns or 0)
                fs.await_flow = True
                self._emit(fs, fs.sequencer.stall(reason, event_ns, wall_ns))
            elif not watch.stalled or now_ns < watch.retry_at_ns:
                continue
            watch.retry_at_ns = now_ns + watch.limit_ns
            if self._side.request_resync(fs.feed.instrument_id):
                self._slog.info("venue snapshot requested after stall", symbol=fs.feed.symbol)

    def _touch(self, fs: FeedState, event_ns: int, recv_ns: int) -> None:
        fs.last_event_ns = max(fs.last_event_ns, event_ns)
        fs.last_recv_ns = max(fs.last_recv_ns, recv_ns)
        fs.skew_ns = smooth_skew(fs.skew_ns, recv_ns - event_ns)

    def _maybe_checkpoint(self, fs: FeedState, event_ns: int, recv_ns: int) -> None:
        if fs.last_checkpoint_ns is None or event_ns - fs.last_checkpoint_ns < self._interval_ns:
            return
        snap = fs.sequencer.checkpoint(event_ns, recv_ns)
        if snap is not None:
            metrics.CHECKPOINTS.labels(fs.feed.symbol).inc()
            self._emit(fs, [snap])

    def _emit(self, fs: FeedState, outs: list[Output]) -> None:
        feed = fs.feed
        pp, sp = feed.price_precision, feed.size_precision
        for out in outs:
            if isinstance(out, DeltaOut):
                payload: wire.Payload = wire.DeltaPayload(
                    U=out.U, u=out.u, pu=out.pu, pp=pp, sp=sp, b=out.bids, a=out.asks
                )
                kind = "delta"
            elif isinstance(out, SnapOut):
                payload = wire.SnapPayload(
                    u=out.u, pp=pp, sp=sp, b=out.bids, a=out.asks, src=out.src
                )
                kind = "snap"
                fs.last_checkpoint_ns = out.event_ns
                if out.src == "venue" and fs.state != "ok" and not fs.await_flow:
                    self._set_state(fs, "ok", "book built from venue snapshot")
            else:
                payload = wire.StatusPayload(state=out.state, reason=out.reason)
                kind = "status"
                self._set_state(fs, {"resync": "degraded"}.get(out.state, out.state), out.reason)
                if out.state == "resync" and self._side.request_resync(feed.instrument_id):
                    self._slog.info("venue snapshot requested", symbol=feed.symbol)
            self._writer.append(feed.symbol, kind, wire.encode(payload, out.event_ns, out.recv_ns))

    def _set_state(self, fs: FeedState, state: str, reason: str) -> None:
        if state == fs.state:
            return
        log = self._slog.info if state in ("ok", "down") else self._slog.warning
        log("feed state", symbol=fs.feed.symbol, state=state, reason=reason)
        metrics.FEED_STATE.labels(fs.feed.symbol, fs.state).set(0)
        metrics.FEED_STATE.labels(fs.feed.symbol, state).set(1)
        fs.state = state

    def flush_metrics(self) -> None:
        """Hand every feed's counts since the last flush to Prometheus."""
        for fs in self._feeds.values():
            self._flush(fs)

    def _flush(self, fs: FeedState) -> None:
        """One feed's message counts, event time, skew and sequencer stats."""
        m = fs.m
        m.flush()
        if fs.last_event_ns:
            m.event_time.set(fs.last_event_ns / 1e9)
        if fs.skew_ns is not None:
            m.skew.set(fs.skew_ns / 1e9)
        now, then = fs.sequencer.stats, fs.synced_stats
        if now.level_changes != then.level_changes:
            m.level_changes.inc(now.level_changes - then.level_changes)
            then.level_changes = now.level_changes
        # The rest change rarely: one comparison each, no copy.
        if now.gaps != then.gaps:
            m.gaps.inc(now.gaps - then.gaps)
            then.gaps = now.gaps
        if now.resyncs != then.resyncs:
            m.resyncs.inc(now.resyncs - then.resyncs)
            then.resyncs = now.resyncs
        if now.crossed != then.crossed:
            m.crossed.inc(now.crossed - then.crossed)
            then.crossed = now.crossed
        if now.covered != then.covered:
            m.covered.inc(now.covered - then.covered)
            then.covered = now.covered
        if now.duplicates != then.duplicates:
            m.duplicates.inc(now.duplicates - then.duplicates)
            then.duplicates = now.duplicates
