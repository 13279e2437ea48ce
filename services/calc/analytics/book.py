"""An L2 order book over scaled-integer prices, with sequence checking.

Prices and sizes are the wire format's scaled integers, so levels are exact dict keys.
The book tracks its own validity: a venue sequence break (``pu`` != previous ``u``)
keeps applying deltas but marks the book ``gap`` until the next snapshot heals it;
``resync``/``unbuildable`` status entries drop it altogether.
"""

from __future__ import annotations

import bisect
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from shared.wire import DeltaPayload, SnapPayload


class BookState(StrEnum):
    #: Built from a snapshot and every delta since chained (pu == previous u).
    OK = "ok"
    #: A sequence break was seen since the last snapshot: levels may be wrong.
    GAP = "gap"
    #: Dropped on a ``resync`` status; waiting for the next snapshot.
    RESYNC = "resync"
    #: No book: nothing seen yet, or the feed said ``unbuildable``.
    NONE = "none"


class DeltaOutcome(StrEnum):
    APPLIED = "applied"
    #: Covered by the snapshot already (u < snapshot u): skipped, not a gap.
    STALE = "stale"
    #: Applied, but its ``pu`` did not chain: the book is now ``gap``.
    GAP = "gap"
    #: No book to apply to (before the first snapshot or after a drop).
    NO_BOOK = "no_book"
    #: Price/size precision differs from the book's: cannot apply, book is ``gap``.
    PRECISION = "precision"


Level = tuple[int, int]


class L2Book:
    """Bids and asks as ``{price: size}`` plus each side's prices in a sorted list.

    The sorted lists (kept with bisect: a new or removed price costs one memmove) make
    best price O(1) and top-N a slice, which is what every cycle needs.
    """

    __slots__ = (
        "_after_snap_u",
        "_ask_px",
        "_bid_px",
        "asks",
        "bids",
        "last_u",
        "pp",
        "sp",
        "state",
    )

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        #: Prices of each side, ascending.
        self._bid_px: list[int] = []
        self._ask_px: list[int] = []
        self.pp = 0
        self.sp = 0
        self.state = BookState.NONE
        #: ``u`` of the last snapshot or applied delta (None before the first snapshot).
        self.last_u: int | None = None
        #: Set right after a snapshot: the first delta may straddle instead of chain.
        self._after_snap_u: int | None = None

    # --- updates ------------------------------------------------------------------

    @property
    def has_book(self) -> bool:
        return self.state in (BookState.OK, BookState.GAP)

    def apply_snap(self, snap: SnapPayload) -> None:
        """Replace everything with the snapshot; the book is ``ok`` afterwards."""
        # Non-positive prices/sizes cannot be real levels: dropped.
        self.bids = {p: s for p, s in snap.b if s > 0 and p > 0}
        self.asks = {p: s for p, s in snap.a if s > 0 and p > 0}
        self._bid_px = sorted(self.bids)
        self._ask_px = sorted(self.asks)
        self.pp, self.sp = snap.pp, snap.sp
        self.state = BookState.OK
        self.last_u = snap.u
        self._after_snap_u = snap.u

    def apply_delta(self, delta: DeltaPayload) -> DeltaOutcome:
        """Apply absolute level sizes (0 removes), checking the venue sequence first."""
        if not self.has_book or self.last_u is None:
            return DeltaOutcome.NO_BOOK
        if delta.pp != self.pp or delta.sp != self.sp:
            self.state = BookState.GAP
            return DeltaOutcome.PRECISION
        outcome = DeltaOutcome.APPLIED
        snap_u = self._after_snap_u
        if snap_u is not None:
            if delta.u < snap_u:
                return DeltaOutcome.STALE
            # First delta after a snapshot: it chains exactly (checkpoint snapshots) or
            # straddles the snapshot id (venue REST snapshots: U <= snap_u + 1 <= u + 1).
            if delta.pu != snap_u and snap_u + 1 < delta.U:
                outcome = DeltaOutcome.GAP
            self._after_snap_u = None
        elif delta.pu != self.last_u:
            outcome = DeltaOutcome.GAP
        if outcome is DeltaOutcome.GAP:
            self.state = BookState.GAP
        _set_levels(self.bids, self._bid_px, delta.b)
        _set_levels(self.asks, self._ask_px, delta.a)
        self.last_u = delta.u
        return outcome

    def drop(self, state: BookState) -> None:
        """Forget every level (``resync`` / ``unbuildable``)."""
        self.bids = {}
        self.asks = {}
        self._bid_px = []
        self._ask_px = []
        self.state = state
        self.last_u = None
        self._after_snap_u = None

    # --- queries --------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        if not self._bid_px:
            return None
        p = self._bid_px[-1]
        return (p, self.bids[p])

    def best_ask(self) -> Level | None:
        if not self._ask_px:
            return None
        p = self._ask_px[0]
        return (p, self.asks[p])

    def is_crossed(self) -> bool:
        """Best bid above best ask (impossible on a correct venue book)."""
        return bool(self._bid_px and self._ask_px and self._bid_px[-1] > self._ask_px[0])

    def top_bids(self, n: int) -> list[Level]:
        """The ``n`` best bid levels, price descending."""
        bids = self.bids
        return [(p, bids[p]) for p in reversed(self._bid_px[-n:])] if n > 0 else []

    def top_asks(self, n: int) -> list[Level]:
        """The ``n`` best ask levels, price ascending."""
        asks = self.asks
        return [(p, asks[p]) for p in self._ask_px[:n]]

    def sorted_side(self, is_bid: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Every level of one side as (prices, sizes) arrays, best first."""
        if is_bid:
            keys, side = self._bid_px[::-1], self.bids
        else:
            keys, side = self._ask_px, self.asks
        prices = np.array(keys, dtype=np.int64)
        sizes = np.fromiter(map(side.__getitem__, keys), dtype=np.int64, count=len(keys))
        return prices, sizes


def _set_levels(side: dict[int, int], prices: list[int], levels: list[tuple[int, int]]) -> None:
    for price, size in levels:
        if price <= 0:
            continue  # not a real level (see apply_snap)
        if size > 0:
            if price not in side:
                bisect.insort(prices, price)
            side[price] = size
        elif side.pop(price, None) is not None:
            del prices[bisect.bisect_left(prices, price)]
