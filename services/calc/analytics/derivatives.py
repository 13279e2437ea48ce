"""Derivatives state of one symbol on exchange event time (pure; live futures only).

Fed by the wire kinds ``mark`` (mark / index price, funding), ``oi`` (open interest) and
``liq`` (one liquidation); the report's ``derivatives`` section (docs/analytics.md).
Derivative entries do not move the cycle clock (only market data does: a mark stream
every second must not close boundaries ahead of the book and trades it travels beside);
they wait in a pending heap and count at boundary ``t`` once their event time is
``<= t``. So at boundary ``t`` the section is the state of the derivative entries with
event time ``<= t`` applied so far -- a function of the stream, whatever its pace:

* ``mark_price``, ``index_price``, ``funding_rate`` (with ``next_funding_time``),
  ``open_interest`` (with ``value_quote`` where the venue gives it): the value with the
  newest event time (of equal times, the later entry), each with its own event time
  ``at`` and ``age_ms`` = ``t`` − ``at``.
* ``premium_bps`` = (mark − index) / index × 10⁴ (4 decimals) from the held mark and
  index; ``at`` is the later of their two event times.
* ``liquidations_5m``: per liquidated side (``long``: a long position was closed by a
  forced sell; ``short``: by a forced buy) the ``count``, ``qty`` (Σ size) and
  ``notional`` (Σ price × size, quote currency; null for inverse contracts) of the
  liquidations with event time in ``(t − 5 min, t]``; ``window_sec`` the part of those
  5 minutes observed (from the first derivative entry's event time); ``last_at`` the
  newest one's event time. Sums are ``math.fsum`` over the window's items (exact,
  whatever order they were added or evicted in).

The section is absent until the symbol's first derivative entry (spot symbols, replays
of recordings, venues without derivatives).
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.report import iso_utc_from_ns
from shared.wire import LiquidationPayload, MarkPayload, OpenInterestPayload

SEC = 1_000_000_000
MS = 1_000_000
LIQUIDATION_WINDOW_NS = 300 * SEC
SIDES = ("long", "short")
Payload = MarkPayload | OpenInterestPayload | LiquidationPayload


@dataclass(slots=True)
class Held:
    """One value, the event time it is valid at, and that time as ISO text."""

    value: float
    at_ns: int
    at_iso: str = ""

    def __post_init__(self) -> None:
        self.at_iso = iso_utc_from_ns(self.at_ns)


def _newer(held: Held | None, at_ns: int) -> bool:
    return held is None or at_ns >= held.at_ns


def _msum_add(partials: list[float], x: float) -> None:
    """Add ``x`` to the exact sum held as non-overlapping ``partials`` (Shewchuk, as
    ``math.fsum`` does inside); adding ``-x`` removes it again, exactly."""
    i = 0
    for y in partials:
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


@dataclass
class _Side:
    """One side's liquidations inside the window, ordered by event time, with the exact
    sums of their sizes and notionals kept as partials (added and removed exactly)."""

    times: list[int] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    notionals: list[float] = field(default_factory=list)
    qty_partials: list[float] = field(default_factory=list)
    notional_partials: list[float] = field(default_factory=list)
    #: ``{count, qty, notional}`` of the current items (None: recompute).
    cached: dict[str, Any] | None = None

    def add(self, at_ns: int, px: float, sz: float) -> None:
        times = self.times
        notional = px * sz
        if not times or at_ns >= times[-1]:
            times.append(at_ns)
            self.sizes.append(sz)
            self.notionals.append(notional)
        else:  # a late one: keep the order
            i = bisect.bisect_right(times, at_ns)
            times.insert(i, at_ns)
            self.sizes.insert(i, sz)
            self.notionals.insert(i, notional)
        _msum_add(self.qty_partials, sz)
        _msum_add(self.notional_partials, notional)
        self.cached = None

    def evict_through(self, cut_ns: int) -> None:
        """Drop the items with event time <= ``cut_ns``."""
        times = self.times
        if not times or times[0] > cut_ns:
            return
        n = bisect.bisect_right(times, cut_ns)
        for k in range(n):
            _msum_add(self.qty_partials, -self.sizes[k])
            _msum_add(self.notional_partials, -self.notionals[k])
        del times[:n], self.sizes[:n], self.notionals[:n]
        if not times:  # start afresh (no partials of cancelled values left)
            self.qty_partials.clear()
            self.notional_partials.clear()
        self.cached = None

    def totals(self, notional: bool) -> dict[str, Any]:
        """``{count, qty, notional}`` of the items held."""
        if self.cached is None:
            self.cached = {
                "count": len(self.times),
                "qty": math.fsum(self.qty_partials),
                "notional": math.fsum(self.notional_partials) if notional else None,
            }
        return self.cached


class DerivativesState:
    """Mark / index / funding / open interest and the liquidation window of one symbol."""

    def __init__(self, window_ns: int = LIQUIDATION_WINDOW_NS, notional: bool = True) -> None:
        self.window_ns = window_ns
        #: Price x size is a quote notional (linear contracts); False: inverse.
        self.notional = notional
        self.mark: Held | None = None
        self.index: Held | None = None
        self.funding: Held | None = None
        self.next_funding_ms: int | None = None
        self.open_interest: Held | None = None
        self.open_interest_value: float | None = None
        self.sides = {side: _Side() for side in SIDES}
        self.last_liquidation_ns: int | None = None
        #: Event time of the first derivative entry (None: no derivative data yet).
        self.since_ns: int | None = None
        #: Entries with a value that cannot be used (non-finite, not positive), skipped.
        self.bad = 0
        #: Entries not yet counted: (event time, arrival number, payload), a heap.
        self._pending: list[tuple[int, int, Payload]] = []
        self._arrivals = 0

    # --- input ---------------------------------------------------------------------

    def add(self, at_ns: int, payload: Payload) -> None:
        """One derivative entry; it counts from the first boundary at or after ``at_ns``."""
        if not _valid(payload):
            self.bad += 1
            return
        if self.since_ns is None or at_ns < self.since_ns:
            self.since_ns = at_ns
        self._arrivals += 1
        heapq.heappush(self._pending, (at_ns, self._arrivals, payload))

    def _settle(self, t_ns: int) -> None:
        """Apply the pending entries with event time <= ``t_ns``, oldest first."""
        pending = self._pending
        while pending and pending[0][0] <= t_ns:
            at, _, p = heapq.heappop(pending)
            if isinstance(p, MarkPayload):
                self._mark(at, p)
            elif isinstance(p, OpenInterestPayload):
                if _newer(self.open_interest, at):
                    self.open_interest = Held(p.oi, at)
                    self.open_interest_value = p.value
            else:
                self.sides[p.side].add(at, p.px, p.sz)
                if self.last_liquidation_ns is None or at > self.last_liquidation_ns:
                    self.last_liquidation_ns = at

    def _mark(self, at: int, p: MarkPayload) -> None:
        if p.mark is not None and _newer(self.mark, at):
            self.mark = Held(p.mark, at)
        if p.index is not None and _newer(self.index, at):
            self.index = Held(p.index, at)
        if (p.funding is not None or p.nft is not None) and _newer(self.funding, at):
            if p.funding is not None:
                self.funding = Held(p.funding, at)
            elif self.funding is not None:
                self.funding = Held(self.funding.value, at)
            if p.nft is not None:
                self.next_funding_ms = p.nft

    # --- output --------------------------------------------------------------------

    def fields(self, t_ns: int) -> dict[str, Any] | None:
        """The ``derivatives`` section at boundary ``t_ns`` (None: no derivative data).

        Boundaries are non-decreasing: items at or before ``t − window`` are dropped.
        """
        if self.since_ns is None:
            return None
        self._settle(t_ns)
        cut = t_ns - self.window_ns
        sides = self.sides
        for side in sides.values():
            side.evict_through(cut)
        last = self.last_liquidation_ns
        observed = max(0, min(self.window_ns, t_ns - self.since_ns))
        mark, index = self.mark, self.index
        premium = None
        if mark is not None and index is not None:
            later = mark if mark.at_ns >= index.at_ns else index
            value = round((mark.value - index.value) / index.value * 10_000, 4)
            premium = {"value": value, "at": later.at_iso, "age_ms": _age(later, t_ns)}
        funding = _item(self.funding, t_ns)
        if funding is not None:
            nft = self.next_funding_ms
            funding["next_funding_time"] = None if nft is None else _iso_ms(nft)
        open_interest = _item(self.open_interest, t_ns)
        if open_interest is not None:
            open_interest["value_quote"] = self.open_interest_value
        return {
            "mark_price": _item(mark, t_ns),
            "index_price": _item(index, t_ns),
            "premium_bps": premium,
            "funding_rate": funding,
            "open_interest": open_interest,
            "liquidations_5m": {
                "long": dict(sides["long"].totals(self.notional)),
                "short": dict(sides["short"].totals(self.notional)),
                "window_sec": round(observed / SEC, 3),
                "last_at": None if last is None or last <= cut else _iso_ns(last),
            },
        }


def _positive(x: float | None) -> bool:
    return x is None or (math.isfinite(x) and x > 0)


def _valid(p: Payload) -> bool:
    if isinstance(p, MarkPayload):
        funding_ok = p.funding is None or math.isfinite(p.funding)
        return _positive(p.mark) and _positive(p.index) and funding_ok
    if isinstance(p, OpenInterestPayload):
        value_ok = p.value is None or (math.isfinite(p.value) and p.value >= 0)
        return math.isfinite(p.oi) and p.oi >= 0 and value_ok
    return p.side in SIDES and _positive(p.px) and _positive(p.sz)


@lru_cache(maxsize=64)
def _iso_ms(ms: int) -> str:
    return iso_utc_from_ns(ms * MS)


@lru_cache(maxsize=64)
def _iso_ns(ns: int) -> str:
    return iso_utc_from_ns(ns)


def _age(held: Held, t_ns: int) -> int:
    return max(0, (t_ns - held.at_ns) // MS)


def _item(held: Held | None, t_ns: int) -> dict[str, Any] | None:
    if held is None:
        return None
    return {"value": held.value, "at": held.at_iso, "age_ms": _age(held, t_ns)}
