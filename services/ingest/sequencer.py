"""Book integrity: snapshot + diff sequencing for one instrument (pure, no I/O).

Follows the venues' documented way of keeping a local book:

1. Diffs that arrive before the snapshot are buffered.
2. When the snapshot (update id ``L``) arrives the book is replaced by it; buffered and
   later diffs the snapshot already covers are dropped (futures ``u < L``; spot and
   Bybit ``u <= L``); the first applied diff must straddle it (futures
   ``U <= L <= u``; spot/Bybit ``U <= L+1 <= u``; or it follows ``L`` exactly, ``pu == L``).
3. After that every diff must follow the previous one: ``pu == previous u`` (``pu`` is
   normalised by the parser so this one rule serves every venue).
4. A break (gap) or a crossed book (best bid >= best ask) invalidates the book: the
   sequencer drops it, emits ``status: resync`` and waits for the next snapshot. Levels
   from before the resync never reach the new book (it is replaced, not merged).
5. A live stall (``stall``) also drops the book and waits for a fresh snapshot, but
   emits ``status: degraded``: the book is not known to be wrong, only possibly stale.
   Diffs already buffered are kept (they still chain onto the coming snapshot).

Inputs and outputs are records (``records.py``) of plain ints (prices/sizes already
scaled), so this module is tested directly against the recorded bookTicker stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from heapq import heapify, heappop, heappush
from typing import Literal

from services.ingest.records import BookUpdate, Level, Source, Status


class Rule(Enum):
    """How the first diff after a snapshot is matched (the venues differ by one)."""

    #: Binance futures: covered ``u < L``; first applied ``U <= L <= u``.
    FUTURES = "futures"
    #: Binance spot and Bybit: covered ``u <= L``; first applied ``U <= L+1 <= u``.
    NEXT_ID = "next_id"


#: What the sequencer emits: a snapshot (a sorted copy of the book), an applied diff
#: (the very update it was given) or a status change.
Output = BookUpdate | Status


@dataclass(slots=True)
class SequencerStats:
    snapshots: int = 0
    applied: int = 0
    covered: int = 0  # buffered diffs the snapshot already held
    duplicates: int = 0  # diffs at or before the last applied id (replayed/duplicated)
    gaps: int = 0
    crossed: int = 0
    resyncs: int = 0
    buffer_overflow: int = 0
    level_changes: int = 0


FeedPhase = Literal["waiting", "ok", "degraded"]


@dataclass
class BookSequencer:
    """Keeps one instrument's validated book and decides what to emit."""

    rule: Rule
    max_buffer: int = 20_000
    #: Event-time budget for the first snapshot; after it ``unbuildable`` is emitted once.
    snapshot_wait_ns: int = 10_000_000_000
    phase: FeedPhase = "waiting"
    stats: SequencerStats = field(default_factory=SequencerStats)
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    best_bid: int | None = None
    best_ask: int | None = None
    #: Every price of ``bids`` (negated) / ``asks`` as a heap, plus prices already
    #: removed (dropped lazily): the next best level when the best one goes, in
    #: O(log n) instead of a scan of the whole side.
    _bid_heap: list[int] = field(default_factory=list)
    _ask_heap: list[int] = field(default_factory=list)
    #: Update id of the snapshot the book was built from, and of the last applied diff.
    snapshot_u: int | None = None
    last_u: int | None = None
    ever_synced: bool = False
    unbuildable_sent: bool = False
    _buffer: deque[BookUpdate] = field(default_factory=deque)

    # -- inputs ------------------------------------------------------------------------

    def on_update(self, upd: BookUpdate) -> list[Output]:
        """Feed one venue message; returns what to emit, in order."""
        if upd.snapshot:
            return self._on_snapshot(upd)
        if self.phase != "ok":
            return self._buffer_diff(upd)
        out: list[Output] = []
        self._on_diff(upd, out)
        return out

    def finish(self, event_ns: int, recv_ns: int) -> list[Output]:
        """The feed ended: say so, and say ``unbuildable`` if no snapshot ever came."""
        out: list[Output] = []
        if not self.ever_synced and not self.unbuildable_sent:
            self.unbuildable_sent = True
            out.append(Status("unbuildable", "no snapshot in the feed", event_ns, recv_ns))
        return out

    def checkpoint(self, event_ns: int, recv_ns: int) -> BookUpdate | None:
        """A snapshot of the current validated book, or None if there is none."""
        if self.phase != "ok" or self.last_u is None:
            return None
        return self._book_snapshot(self.last_u, event_ns, recv_ns, "checkpoint")

    def current(self, event_ns: int, recv_ns: int) -> BookUpdate | None:
        """The validated book as a checkpoint snapshot, even right after the venue's
        snapshot (valid at its id); None without a validated book."""
        u = self.last_u if self.last_u is not None else self.snapshot_u
        if self.phase != "ok" or u is None:
            return None
        return self._book_snapshot(u, event_ns, recv_ns, "checkpoint")

    def _book_snapshot(self, u: int, event_ns: int, recv_ns: int, source: Source) -> BookUpdate:
        """The validated book as a snapshot, best first."""
        bids = sorted(self.bids.items(), reverse=True)
        asks = sorted(self.asks.items())
        return BookUpdate(True, u, u, u, bids, asks, event_ns, recv_ns, source)

    def invalidate(self, reason: str, event_ns: int, recv_ns: int) -> list[Output]:
        """Drop the book from outside (e.g. a diff's venue ids were lost): a gap."""
        if self.phase != "ok":
            return []
        self.stats.gaps += 1
        out: list[Output] = []
        marker = BookUpdate(False, 0, 0, 0, [], [], event_ns, recv_ns)
        self._resync(reason, marker, out, keep=False)
        return out

    def stall(self, reason: str, event_ns: int, recv_ns: int) -> list[Output]:
        """The book feed went silent (live): wait for a fresh snapshot, buffering diffs.

        The book is dropped so that diffs arriving while the snapshot is fetched are
        buffered (and those it covers dropped) instead of applied to a stale book.
        """
        return self.refetch("degraded", reason, event_ns, recv_ns)

    def refetch(
        self, state: Literal["degraded", "resync"], reason: str, event_ns: int, recv_ns: int
    ) -> list[Output]:
        """Wait for a fresh venue snapshot (a stall, or a takeover of the feed): the book
        is dropped, diffs are buffered (they may continue the coming snapshot)."""
        if self.phase == "ok":
            self._set_book({}, {})
            self.last_u = None
        self.phase = "degraded"
        return [Status(state, reason, event_ns, recv_ns)]

    def top(self) -> tuple[int, int, int, int] | None:
        """(best bid px, size, best ask px, size) of the validated book, or None."""
        if self.phase != "ok" or self.best_bid is None or self.best_ask is None:
            return None
        return self.best_bid, self.bids[self.best_bid], self.best_ask, self.asks[self.best_ask]

    # -- internals ---------------------------------------------------------------------

    def _on_snapshot(self, upd: BookUpdate) -> list[Output]:
        out: list[Output] = []
        recovering = self.phase == "degraded"
        self._set_book({p: s for p, s in upd.bids if s > 0}, {p: s for p, s in upd.asks if s > 0})
        self.snapshot_u = upd.u
        self.last_u = None
        self.stats.snapshots += 1
        if self._crossed():
            self.stats.crossed += 1
            self._resync("venue snapshot is crossed", upd, out, keep=False)
            return out
        self.phase = "ok"
        self.ever_synced = True
        out.append(self._book_snapshot(upd.u, upd.event_ns, upd.recv_ns, upd.source))
        if recovering:
            out.append(Status("ok", "rebuilt from venue snapshot", upd.event_ns, upd.recv_ns))
        pending, self._buffer = self._buffer, deque()
        for diff in pending:
            if self.phase == "ok":
                self._on_diff(diff, out)
            else:
                self._buffer_diff(diff, out)
        return out

    def _buffer_diff(self, upd: BookUpdate, out: list[Output] | None = None) -> list[Output]:
        out = [] if out is None else out
        if len(self._buffer) >= self.max_buffer:
            self._buffer.popleft()
            self.stats.buffer_overflow += 1
        self._buffer.append(upd)
        if (
            not self.ever_synced
            and not self.unbuildable_sent
            and upd.event_ns - self._buffer[0].event_ns > self.snapshot_wait_ns
        ):
            self.unbuildable_sent = True
            waited = self.snapshot_wait_ns / 1e9
            out.append(
                Status("unbuildable", f"no snapshot within {waited:g} s", upd.event_ns, upd.recv_ns)
            )
        return out

    def _on_diff(self, upd: BookUpdate, out: list[Output]) -> None:
        snap_u = self.snapshot_u
        assert snap_u is not None
        if self.last_u is None:
            covered = upd.u < snap_u if self.rule is Rule.FUTURES else upd.u <= snap_u
            if covered:
                self.stats.covered += 1
                return
            target = snap_u if self.rule is Rule.FUTURES else snap_u + 1
            # ``pu == L`` also continues the snapshot exactly: a client (like Nautilus's
            # live Binance client) may already have dropped the diff ending at ``L``.
            if not (upd.U <= target <= upd.u or upd.pu == snap_u):
                self.stats.gaps += 1
                self._resync(
                    f"first diff U={upd.U} u={upd.u} does not straddle snapshot {snap_u}", upd, out
                )
                return
        elif upd.pu != self.last_u:
            if upd.u <= self.last_u:
                self.stats.duplicates += 1  # already applied: sizes are absolute, skip it
                return
            self.stats.gaps += 1
            self._resync(f"gap: pu={upd.pu} after u={self.last_u}", upd, out)
            return
        self._apply(upd.bids, self.bids, is_bid=True)
        self._apply(upd.asks, self.asks, is_bid=False)
        self.stats.level_changes += len(upd.bids) + len(upd.asks)
        if self._crossed():
            self.stats.crossed += 1
            self._resync(
                f"crossed book after u={upd.u}: bid {self.best_bid} >= ask {self.best_ask}",
                upd,
                out,
                keep=False,
            )
            return
        self.last_u = upd.u
        self.stats.applied += 1
        out.append(upd)

    def _set_book(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        self.bids, self.asks = bids, asks
        self._bid_heap = [-p for p in bids]
        self._ask_heap = list(asks)
        heapify(self._bid_heap)
        heapify(self._ask_heap)
        # The heaps' tops: no second scan of the sides.
        self.best_bid = -self._bid_heap[0] if self._bid_heap else None
        self.best_ask = self._ask_heap[0] if self._ask_heap else None

    def _apply(self, levels: list[Level], side: dict[int, int], is_bid: bool) -> None:
        best = self.best_bid if is_bid else self.best_ask
        heap = self._bid_heap if is_bid else self._ask_heap
        sign = -1 if is_bid else 1
        best_gone = False
        for price, size in levels:
            if size == 0:
                if side.pop(price, None) is not None and price == best:
                    best_gone = True
            else:
                if price not in side:
                    heappush(heap, sign * price)
                side[price] = size
                if best is None or (price > best if is_bid else price < best):
                    best = price
                    best_gone = False
        if best_gone:
            while heap and sign * heap[0] not in side:
                heappop(heap)
            best = sign * heap[0] if heap else None
        if len(heap) > 2 * len(side) + 64:  # mostly removed prices: rebuild
            heap[:] = [sign * p for p in side]
            heapify(heap)
        if is_bid:
            self.best_bid = best
        else:
            self.best_ask = best

    def _crossed(self) -> bool:
        return (
            self.best_bid is not None
            and self.best_ask is not None
            and self.best_bid >= self.best_ask
        )

    def _resync(self, reason: str, upd: BookUpdate, out: list[Output], keep: bool = True) -> None:
        """Drop the book; wait for the next snapshot (newer diffs are kept for it)."""
        self.phase = "degraded"
        self.stats.resyncs += 1
        self._set_book({}, {})
        self.last_u = None
        self._buffer.clear()
        if keep:
            self._buffer.append(upd)
        out.append(Status("resync", reason, upd.event_ns, upd.recv_ns))
