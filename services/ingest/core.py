"""One feed's ingest state machine: venue records in, stream entries out (pure, no I/O).

``FeedCore`` holds everything ingest decides per feed: the ``BookSequencer`` (snapshot +
diff integrity, resync), the stall watch, the feed state (``waiting``, ``ok``,
``degraded``, ``unbuildable``, ``down``), checkpoint snapshots and the smoothed clock
skew. Each input returns what to do, in order:

* records for the stream (``BookUpdate``, ``Trade``, ``Status``; ``records.wire_fields``
  encodes them);
* ``ResyncRequest``: ask the venue for a fresh book (live: Binance REST depth, Bybit
  re-subscribe; a replay has no venue to ask);
* ``StateChange`` and ``Note``: for the shell's logs and metrics.

The service's Nautilus Actor (live and replay) and the offline replay (``offline.py``,
``context8 report-at``) drive the same core, so both write the same entries.

Stalls (a book feed silent for longer than its limit) are decided on one of two clocks:

* ``wall_clock=False`` (replay, offline): each record advances the feed's exchange
  clock; a silence over the limit writes ``status: degraded`` stamped at the stall's
  onset + limit. The book is kept: the recorded sequence chain is authoritative, so when
  book messages resume with the chain intact ``status: ok`` follows; a broken chain is a
  gap (``resync``) as always.
* ``wall_clock=True`` (live): the shell calls ``check_stall`` with the monotonic clock;
  a stall writes ``status: degraded``, drops the book and asks for a fresh snapshot,
  again every limit while the feed stays silent. The snapshot brings ``snap``; ``ok``
  comes with it when it arrived over the socket (Bybit), else (a REST snapshot) only
  with the first live diff applied on top of it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from services.ingest.feeds import Feed
from services.ingest.records import BookUpdate, Derivative, Record, Status, Trade
from services.ingest.sequencer import BookSequencer, Output, Rule
from services.ingest.stall import StallWatch

#: Weight of the newest sample in the smoothed clock skew (~ the last 100 messages).
SKEW_ALPHA = 0.01
#: Trades kept for a takeover's backfill: this much exchange time, at most this many.
RECENT_TRADES_NS = 60_000_000_000
RECENT_TRADES_MAX = 100_000

FeedStateName = Literal["waiting", "ok", "degraded", "unbuildable", "down"]


def smooth_skew(previous: float | None, sample_ns: int, alpha: float = SKEW_ALPHA) -> float:
    """Exponentially weighted mean of receive - exchange time (the first sample starts it)."""
    if previous is None:
        return float(sample_ns)
    return previous + alpha * (sample_ns - previous)


@dataclass(frozen=True)
class CoreConfig:
    """The settings that shape a feed's entries."""

    checkpoint_interval_ns: int = 30_000_000_000
    snapshot_wait_ns: int = 10_000_000_000
    #: Expected maximum book silence (None = stall detection off).
    stall_limit_ns: int | None = 10_000_000_000
    #: Live: stalls on the monotonic clock (``check_stall``); else on exchange time.
    wall_clock: bool = False


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """Ask the venue for a fresh book (why: a gap, a crossed book, a stall)."""

    reason: str


@dataclass(frozen=True, slots=True)
class StateChange:
    old: FeedStateName
    new: FeedStateName
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth a log line."""

    level: Literal["info", "warning"]
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Out = BookUpdate | Trade | Status | Derivative | ResyncRequest | StateChange | Note

#: Status entry state -> the feed state it puts the feed in.
_STATE_OF = {"resync": "degraded"}


@dataclass(frozen=True)
class WrittenTail:
    """What the stream already holds near its end, read by a process taking it over:
    the ids of its trades with an event time from ``since_ns`` on (None: empty stream)."""

    trade_ids: frozenset[str]
    since_ns: int | None


@dataclass
class CoreCounts:
    """What happened, for the shell's metrics (the sequencer keeps its own stats)."""

    stalls: int = 0
    checkpoints: int = 0
    #: Trades written on a takeover that the previous writer had not written.
    backfilled: int = 0


class FeedCore:
    """One feed's book integrity, stalls, state and checkpoints."""

    def __init__(self, feed: Feed, config: CoreConfig | None = None) -> None:
        self.feed = feed
        self.config = config = config or CoreConfig()
        self.sequencer = BookSequencer(
            Rule.FUTURES if feed.is_futures else Rule.NEXT_ID,
            snapshot_wait_ns=config.snapshot_wait_ns,
        )
        self.stall = StallWatch(config.stall_limit_ns)
        self.state: FeedStateName = "waiting"
        self.counts = CoreCounts()
        self.last_checkpoint_ns: int | None = None
        self.last_event_ns = 0
        self.last_recv_ns = 0
        self.ended = False
        #: Live: a stall was declared and no live book update has followed yet. A REST
        #: snapshot rebuilds the book but does not end this (the socket may still be
        #: dead): ``ok`` waits for the first live diff applied on top of it.
        self.await_flow = False
        #: Smoothed receive - exchange time, ns (None until the first record).
        self.skew_ns: float | None = None
        #: Live: the book silence at the last ``check_stall``.
        self.silence_ns = 0
        self._down_reason = ""
        self._wall = config.wall_clock
        #: The last minute of trades, for a takeover's backfill (a standby sees every
        #: trade but writes none; those after the previous writer's last are missing).
        self._recent: deque[Trade] = deque(maxlen=RECENT_TRADES_MAX)

    # -- inputs --------------------------------------------------------------------------

    def on_record(self, record: Record, now_ns: int = 0) -> list[Out]:
        """One venue record. ``now_ns``: the live stall clock (monotonic); unused in replay."""
        if type(record) is Trade:
            return self.on_trade(record)
        assert isinstance(record, BookUpdate)
        return self.on_book(record, now_ns)

    def on_book(self, upd: BookUpdate, now_ns: int = 0) -> list[Out]:
        out: list[Out] = []
        self._touch(upd.event_ns, upd.recv_ns)
        if self._wall:
            now = now_ns
        else:
            now = upd.event_ns
            self._stall_on_event_time(upd.event_ns, upd.recv_ns, out)
        if self.await_flow and upd.snapshot and upd.source == "stream":
            self.await_flow = False  # a snapshot over the socket (Bybit): the feed flows
        outs = self.sequencer.on_update(upd)
        if self.await_flow:
            outs = self._hold_ok_until_flow(outs)
        self._emit(outs, out)
        if upd.source != "rest":  # only the venue's feed ends a silence, not our own fetch
            silence = self.stall.book(now)
            if silence is not None:
                self._stall_over(outs, silence, upd.event_ns, upd.recv_ns, out)
        self._maybe_checkpoint(upd.event_ns, upd.recv_ns, out)
        return out

    def on_trade(self, trade: Trade) -> list[Out]:
        out: list[Out] = []
        if not self._wall:
            self._stall_on_event_time(trade.event_ns, trade.recv_ns, out)
        out.append(trade)
        recent = self._recent
        recent.append(trade)
        while trade.event_ns - recent[0].event_ns > RECENT_TRADES_NS:
            recent.popleft()
        self._touch(trade.event_ns, trade.recv_ns)
        self._maybe_checkpoint(trade.event_ns, trade.recv_ns, out)
        return out

    def on_derivative(self, record: Derivative) -> list[Out]:
        """A derivative record (mark/funding, open interest, liquidation; live futures):
        written as it is. It does not touch the book, its state or the stall watch."""
        if self.ended:
            return []
        return [record]

    def invalidate(self, reason: str, event_ns: int, recv_ns: int) -> list[Out]:
        """Drop the book from outside (e.g. a diff's venue ids were lost): a gap."""
        out: list[Out] = []
        self._emit(self.sequencer.invalidate(reason, event_ns, recv_ns), out)
        return out

    def venue_status(self, status: Status) -> list[Out]:
        """Live: what the venue client itself reports (not the venue's stream).

        ``down``: the venue cannot be reached (``reason`` names the URL and error); the
        feed is ``down`` until data flows again (the next venue snapshot rebuilds the
        book and brings ``ok``); stalls are not timed meanwhile. ``resync``: the
        connection was re-established after a drop; whatever was sent meanwhile is
        lost, so the book is re-synced from a fresh venue snapshot.
        """
        out: list[Out] = []
        if self.ended:
            return out
        event_ns = status.recv_ns - int(self.skew_ns or 0)
        if status.state == "down":
            if self.state != "down" or status.reason != self._down_reason:
                self._down_reason = status.reason
                self._emit([Status("down", status.reason, event_ns, status.recv_ns)], out)
        elif status.state == "resync":
            refetch = self.sequencer.refetch("resync", status.reason, event_ns, status.recv_ns)
            self._emit(refetch, out)
        return out

    def takeover(self, reason: str, wall_ns: int, written: WrittenTail | None) -> list[Out]:
        """This process starts writing a feed another process wrote until now.

        The stream's book is the previous writer's, at a position this process does not
        know: ``status: resync`` tells consumers to drop it. The trades this process saw
        as a standby that the stream lacks (``written``: what the previous writer wrote
        last) follow, in order. Live, the book is re-synced from a fresh venue snapshot
        (diffs buffered meanwhile). A replay has no venue to ask: its own validated book
        (same sequence rules, from the recording's snapshot) follows at once as a
        checkpoint ``snap``, then ``ok``.
        """
        out: list[Out] = []
        if self.ended:
            return out
        missing = [
            t
            for t in self._recent
            if written is None
            or written.since_ns is None
            or (t.event_ns >= written.since_ns and t.id not in written.trade_ids)
        ]
        self.counts.backfilled += len(missing)
        if self._wall:
            event_ns = wall_ns - int(self.skew_ns or 0)
            self._emit(self.sequencer.refetch("resync", reason, event_ns, wall_ns), out)
            out.extend(missing)
            return out
        event_ns, recv_ns = self.last_event_ns, self.last_recv_ns
        own = self.sequencer.current(event_ns, recv_ns)
        out.append(Status("resync", reason, event_ns, recv_ns))
        self._set_state("degraded", reason, out)
        out.extend(missing)
        if own is not None:
            ok = Status("ok", f"{reason}; book of this process", event_ns, recv_ns)
            self._emit([own, ok], out)
        return out

    def start(self, now_ns: int) -> None:
        """Live: count book silence from now (a feed that never speaks stalls too)."""
        self.stall.start(now_ns)

    def check_stall(self, now_ns: int, wall_ns: int) -> list[Out]:
        """Live: open a stall if the book has been silent beyond its limit; re-sync it.

        ``now_ns``: the monotonic clock ``on_book`` was given; ``wall_ns``: Unix time for
        the status entry's receive time. A feed that stays silent asks for a new re-sync
        every limit (the venue client's back-off spaces them further).
        """
        watch = self.stall
        out: list[Out] = []
        if self.ended or watch.limit_ns is None or self.state == "down":
            return out
        self.silence_ns = silence = watch.silence_ns(now_ns)
        if watch.open_if_due(now_ns) is not None:
            limit_s = watch.limit_ns / 1e9
            reason = (
                f"stall: no book update for {silence / 1e9:.1f} s (expected at most {limit_s:g} s)"
            )
            self.counts.stalls += 1
            out.append(
                Note(
                    "warning",
                    "book feed stalled",
                    {"silence_s": round(silence / 1e9, 3), "limit_s": limit_s},
                )
            )
            # Exchange time now, estimated from the receive clock and the skew.
            event_ns = wall_ns - int(self.skew_ns or 0)
            self.await_flow = True
            self._emit(self.sequencer.stall(reason, event_ns, wall_ns), out)
        elif not watch.stalled or now_ns < watch.retry_at_ns:
            return out
        watch.retry_at_ns = now_ns + watch.limit_ns
        out.append(ResyncRequest("stall"))
        return out

    def end(self, reason: str) -> list[Out]:
        """The feed ended: ``unbuildable`` if it never had a book, then ``down``."""
        out: list[Out] = []
        if self.ended:
            return out
        self.ended = True
        event_ns, recv_ns = self.last_event_ns, self.last_recv_ns
        outs: list[Output] = list(self.sequencer.finish(event_ns, recv_ns))
        outs.append(Status("down", reason, event_ns, recv_ns))
        self._emit(outs, out)
        return out

    # -- internals ---------------------------------------------------------------------

    def _emit(self, outs: list[Output], out: list[Out]) -> None:
        """Sequencer outputs -> entries, with the state changes and re-syncs they imply."""
        for item in outs:
            if type(item) is BookUpdate:
                if item.snapshot:
                    self.last_checkpoint_ns = item.event_ns
                    if item.source != "checkpoint" and self.state != "ok" and not self.await_flow:
                        self._set_state("ok", "book built from venue snapshot", out)
            else:
                assert isinstance(item, Status)
                self._set_state(_STATE_OF.get(item.state, item.state), item.reason, out)  # type: ignore[arg-type]
                if item.state == "resync":
                    out.append(item)
                    out.append(ResyncRequest(item.reason))
                    continue
            out.append(item)

    def _set_state(self, state: FeedStateName, reason: str, out: list[Out]) -> None:
        if state != self.state:
            out.append(StateChange(self.state, state, reason))
            self.state = state

    def _hold_ok_until_flow(self, outs: list[Output]) -> list[Output]:
        """After a live stall: ``ok`` only once a live diff continues the rebuilt book.

        A REST snapshot alone says the book was right when fetched, not that updates
        arrive; the feed stays ``degraded`` (with that reason) until one does.
        """
        held: list[Output] = []
        flowing = any(type(o) is BookUpdate and not o.snapshot for o in outs)
        for item in outs:
            if type(item) is Status and item.state == "ok":
                if not flowing:
                    reason = "book rebuilt from a REST snapshot; waiting for live updates"
                    held.append(Status("degraded", reason, item.event_ns, item.recv_ns))
                continue
            held.append(item)
            if self.await_flow and type(item) is BookUpdate and not item.snapshot:
                self.await_flow = False
                reason = "live book updates resumed after the stall"
                held.append(Status("ok", reason, item.event_ns, item.recv_ns))
        return held

    def _stall_on_event_time(self, event_ns: int, recv_ns: int, out: list[Out]) -> None:
        """Replay: has this feed's book been silent too long at ``event_ns``?

        Only a validated book can go stale; without one the feed is already not ``ok``.
        """
        if self.sequencer.phase != "ok":
            return
        last = self.stall.last_book_ns
        at = self.stall.open_if_due(event_ns)
        if at is None or last is None:
            return
        limit_s = (at - last) / 1e9
        reason = f"stall: no book update for {limit_s:g} s (expected at most {limit_s:g} s)"
        self.counts.stalls += 1
        # Stamped when the silence crossed the limit; received with the record that showed it.
        self._emit([Status("degraded", reason, at, recv_ns)], out)

    def _stall_over(
        self, outs: list[Output], silence_ns: int, event_ns: int, recv_ns: int, out: list[Out]
    ) -> None:
        """Book messages are back after a stall: ``ok`` if the book is intact.

        Replay keeps its book through a stall, so a message that continues the chain
        proves nothing was lost. In live mode the stall dropped the book: the ``ok``
        comes with the fresh snapshot (from the sequencer), not from here.
        """
        rebuilt = any(type(o) is Status and o.state == "ok" for o in outs)
        out.append(Note("info", "book updates resumed", {"silence_s": round(silence_ns / 1e9, 3)}))
        if self.sequencer.phase != "ok" or rebuilt:
            return
        reason = f"book updates resumed after {silence_ns / 1e9:.3f} s; sequence chain intact"
        self._emit([Status("ok", reason, event_ns, recv_ns)], out)

    def _touch(self, event_ns: int, recv_ns: int) -> None:
        if event_ns > self.last_event_ns:
            self.last_event_ns = event_ns
        if recv_ns > self.last_recv_ns:
            self.last_recv_ns = recv_ns
        self.skew_ns = smooth_skew(self.skew_ns, recv_ns - event_ns)

    def _maybe_checkpoint(self, event_ns: int, recv_ns: int, out: list[Out]) -> None:
        last = self.last_checkpoint_ns
        if last is None or event_ns - last < self.config.checkpoint_interval_ns:
            return
        snap = self.sequencer.checkpoint(event_ns, recv_ns)
        if snap is not None:
            self.counts.checkpoints += 1
            self._emit([snap], out)
