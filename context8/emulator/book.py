"""The venue's true order book, rebuilt from the recording with plain dicts.

Independent of ingest on purpose (nothing from ``services/`` or ``shared/``): the
emulator is the venue, and the tests compare what a client rebuilt against it. Levels
are the venue's own decimal strings, keyed by price string, so REST answers quote
exactly what the venue sent.

Binance (documented sync): at the REST snapshot line the book becomes the snapshot and
the diffs buffered before it that it does not cover are applied (futures cover
``u < lastUpdateId``, spot ``u <= lastUpdateId``), then every later diff; a size of 0
removes a level. A diff that does not continue the chain (futures ``pu``, spot ``U``)
makes the book unknown again until the next snapshot line (a new recording session).
Bybit: a snapshot replaces the book, a delta updates it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from context8.emulator.recording import Event, Kind

Levels = list[list[str]]


def _is_zero(size: str) -> bool:
    try:
        return float(size) == 0.0
    except ValueError:
        return False


class TrueBook:
    """One side-pair of price-string -> size-string levels."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def replace(self, bids: Iterable[list[str]], asks: Iterable[list[str]]) -> None:
        self.bids = {p: s for p, s, *_ in bids if not _is_zero(s)}
        self.asks = {p: s for p, s, *_ in asks if not _is_zero(s)}

    def apply(self, bids: Iterable[list[str]], asks: Iterable[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, size, *_ in levels:
                if _is_zero(size):
                    side.pop(price, None)
                else:
                    side[price] = size

    def top(self, depth: int | None = None) -> tuple[Levels, Levels]:
        """Best ``depth`` levels per side (all if None): bids descending, asks ascending."""
        if depth is None or depth >= max(len(self.bids), len(self.asks)):
            bids = sorted(self.bids.items(), key=lambda kv: float(kv[0]), reverse=True)
            asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        else:
            bids = heapq.nlargest(depth, self.bids.items(), key=lambda kv: float(kv[0]))
            asks = heapq.nsmallest(depth, self.asks.items(), key=lambda kv: float(kv[0]))
        return [[p, s] for p, s in bids], [[p, s] for p, s in asks]


class BookKeeper:
    """Applies a symbol's recorded frames to its true book, as the venue's sync rules say."""

    def __init__(self, venue: str, futures: bool) -> None:
        self.venue = venue
        self.futures = futures
        self.book = TrueBook()
        self.known = False
        #: Binance: u of the last applied diff (the snapshot's id before any);
        #: Bybit: u of the last snapshot/delta
        self.last_update_id = 0
        self.seq = 0  # Bybit cross sequence of the last applied frame
        self.cts = 0  # Bybit matching-engine time of the last applied frame
        self.snapshots = 0  # snapshot lines applied
        self.chain_breaks = 0  # diffs that did not continue the chain (book unknown after)
        #: Binance: the recorded REST snapshot while the stream still stands at it (no
        #: later diff applied yet): the venue's own answer at that position.
        self.recorded_snapshot: Event | None = None
        #: The last recorded REST snapshot applied: what a request that had to wait for
        #: the book (made before the position reached it) is answered, whatever the
        #: stream sent meanwhile (the recorded answer arrived after those frames too).
        self.last_snapshot: Event | None = None
        self._pending: list[Event] = []

    def apply(self, ev: Event) -> None:
        if self.venue == "binance":
            self._binance(ev)
        else:
            self._bybit(ev)

    def _binance(self, ev: Event) -> None:
        if ev.kind is Kind.SNAPSHOT:
            snap_id = ev.last_id
            self.book.replace(ev.bids, ev.asks)
            self.last_update_id = snap_id
            self.known = True
            self.snapshots += 1
            pending, self._pending = self._pending, []
            for diff in pending:
                covered = diff.last_id < snap_id if self.futures else diff.last_id <= snap_id
                if not covered:
                    self._apply_diff(diff)
            self.recorded_snapshot = self.last_snapshot = ev
            return
        if ev.kind is not Kind.DEPTH:
            return
        if not self.known:
            self._pending.append(ev)
            return
        self.recorded_snapshot = None
        if self._continues(ev):
            self._apply_diff(ev)
        elif ev.last_id > self.last_update_id:
            # Not the next diff: the recording has a new session; wait for its snapshot.
            self.chain_breaks += 1
            self.known = False
            self._pending = [ev]

    def _continues(self, ev: Event) -> bool:
        last = self.last_update_id
        if self.futures and ev.prev_id >= 0:
            # pu == last, or (first diff after a snapshot) one that straddles it.
            return ev.prev_id == last or ev.first_id <= last <= ev.last_id
        return ev.first_id <= last + 1

    def _apply_diff(self, ev: Event) -> None:
        if ev.last_id < self.last_update_id:
            return  # already in the book
        self.book.apply(ev.bids, ev.asks)
        self.last_update_id = ev.last_id

    def _bybit(self, ev: Event) -> None:
        if ev.kind is Kind.SNAPSHOT:
            self.book.replace(ev.bids, ev.asks)
            self.known = True
            self.snapshots += 1
        elif ev.kind is Kind.DEPTH and self.known:
            self.book.apply(ev.bids, ev.asks)
        else:
            return
        self.last_update_id = ev.last_id
        self.seq = ev.seq
        self.cts = ev.cts
