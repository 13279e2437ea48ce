"""Trade windows on exchange event time: flow (10 s / 30 s) and 24 h statistics.

All quantities stay scaled integers (exact sums). The 24 h statistics aggregate
trades into buckets of the fast-cycle width, aligned to the epoch: since every cycle
boundary is a bucket edge, "trades with event time in (t - 24 h, t]" is exactly a
set of whole buckets, and memory stays bounded (at most 24 h / width buckets).
Liquidation fills (``liq``) count in volume and flow but never set a price (last,
high, low, open): they can print far from the market.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SEC = 1_000_000_000
DAY_NS = 86_400 * SEC


class _Bucket:
    __slots__ = ("close", "high", "k", "low", "open", "volume")

    def __init__(self, k: int) -> None:
        self.k = k
        self.open: int | None = None
        self.high: int | None = None
        self.low: int | None = None
        self.close: int | None = None
        self.volume = 0


@dataclass(frozen=True, slots=True)
class Stats24h:
    """Scaled-int 24 h statistics at one boundary (None where no trade sets them)."""

    high: int | None
    low: int | None
    open: int | None
    last: int | None
    volume: int
    trade_buckets: int


def _insert_sorted(dq: deque[tuple[int, int]], item: tuple[int, int]) -> None:
    """Insert keeping the deque ordered by its first element (late arrivals are rare)."""
    i = len(dq)
    while i > 0 and dq[i - 1][0] > item[0]:
        i -= 1
    dq.insert(i, item)


class TradeWindows:
    """Sliding windows of trades: count over ``count_window``, net taker flow over
    ``net_window``, and 24 h OHLCV over buckets of ``bucket_ns``."""

    def __init__(
        self,
        bucket_ns: int,
        count_window_ns: int = 10 * SEC,
        net_window_ns: int = 30 * SEC,
        stats_window_ns: int = DAY_NS,
    ) -> None:
        if stats_window_ns % bucket_ns:
            raise ValueError("the 24 h window must be a whole number of buckets")
        self.bucket_ns = bucket_ns
        self.count_window_ns = count_window_ns
        self.net_window_ns = net_window_ns
        self.stats_buckets = stats_window_ns // bucket_ns
        #: Precision of the stored integers (fixed by the first trade; later trades with
        #: another precision are rescaled to it).
        self.pp: int | None = None
        self.sp: int | None = None
        self._count: deque[tuple[int, int]] = deque()  # (event_ns, 0)
        self._net: deque[tuple[int, int]] = deque()  # (event_ns, signed size)
        self._net_sum = 0
        self._buckets: deque[_Bucket] = deque()
        self._max: deque[tuple[int, int]] = deque()  # (k, high) decreasing highs
        self._min: deque[tuple[int, int]] = deque()  # (k, low) increasing lows
        self._vol_sum = 0
        #: Last trade price overall (not windowed), scaled by ``pp``.
        self.last_price: int | None = None
        self.trades_seen = 0

    # --- input ------------------------------------------------------------------

    def add(self, event_ns: int, px: int, sz: int, pp: int, sp: int, side: str, liq: bool) -> None:
        if self.pp is None or self.sp is None:
            self.pp, self.sp = pp, sp
        if pp != self.pp:
            px = _rescale(px, pp, self.pp)
        if sp != self.sp:
            sz = _rescale(sz, sp, self.sp)
        self.trades_seen += 1
        signed = sz if side == "B" else -sz if side == "S" else 0
        if not self._count or event_ns >= self._count[-1][0]:
            self._count.append((event_ns, 0))
            self._net.append((event_ns, signed))
        else:
            _insert_sorted(self._count, (event_ns, 0))
            _insert_sorted(self._net, (event_ns, signed))
        self._net_sum += signed
        self._add_to_bucket(event_ns, None if liq else px, sz)
        if not liq:
            self.last_price = px

    def _add_to_bucket(self, event_ns: int, px: int | None, sz: int) -> None:
        k = -(-event_ns // self.bucket_ns)  # bucket k covers ((k-1)w, kw]
        buckets = self._buckets
        in_order = not buckets or k >= buckets[-1].k
        if in_order:
            if not buckets or buckets[-1].k != k:
                buckets.append(_Bucket(k))
            b = buckets[-1]
        else:
            b = self._older_bucket(k)
        b.volume += sz
        self._vol_sum += sz
        if px is None:
            return
        if b.open is None:
            b.open = px
        b.close = px
        if b.high is None or px > b.high:
            b.high = px
            if in_order:
                while self._max and self._max[-1][1] <= px:
                    self._max.pop()
                self._max.append((k, px))
        if b.low is None or px < b.low:
            b.low = px
            if in_order:
                while self._min and self._min[-1][1] >= px:
                    self._min.pop()
                self._min.append((k, px))
        if not in_order:
            self._rebuild_extremes()

    def _older_bucket(self, k: int) -> _Bucket:
        buckets = self._buckets
        i = len(buckets)
        while i > 0 and buckets[i - 1].k > k:
            i -= 1
        if i > 0 and buckets[i - 1].k == k:
            return buckets[i - 1]
        b = _Bucket(k)
        buckets.insert(i, b)
        return b

    def _rebuild_extremes(self) -> None:
        self._max.clear()
        self._min.clear()
        for b in self._buckets:
            if b.high is not None:
                while self._max and self._max[-1][1] <= b.high:
                    self._max.pop()
                self._max.append((b.k, b.high))
            if b.low is not None:
                while self._min and self._min[-1][1] >= b.low:
                    self._min.pop()
                self._min.append((b.k, b.low))

    # --- evaluation at a boundary ----------------------------------------------------

    def advance(self, t_ns: int) -> None:
        """Evict everything outside the windows ending at ``t_ns`` (monotonic calls)."""
        edge = t_ns - self.count_window_ns
        count = self._count
        while count and count[0][0] <= edge:
            count.popleft()
        edge = t_ns - self.net_window_ns
        net = self._net
        while net and net[0][0] <= edge:
            self._net_sum -= net.popleft()[1]
        first_k = t_ns // self.bucket_ns - self.stats_buckets  # buckets k <= first_k are out
        buckets = self._buckets
        while buckets and buckets[0].k <= first_k:
            self._vol_sum -= buckets.popleft().volume
        while self._max and self._max[0][0] <= first_k:
            self._max.popleft()
        while self._min and self._min[0][0] <= first_k:
            self._min.popleft()

    def trade_count(self) -> int:
        """Trades in (t - count window, t] after ``advance(t)``."""
        return len(self._count)

    def net_flow(self) -> int:
        """Taker-buy minus taker-sell size in (t - net window, t] after ``advance(t)``."""
        return self._net_sum

    def stats(self) -> Stats24h:
        """24 h statistics after ``advance(t)``."""
        open_px = next((b.open for b in self._buckets if b.open is not None), None)
        last_px = next((b.close for b in reversed(self._buckets) if b.close is not None), None)
        return Stats24h(
            high=self._max[0][1] if self._max else None,
            low=self._min[0][1] if self._min else None,
            open=open_px,
            last=last_px,
            volume=self._vol_sum,
            trade_buckets=len(self._buckets),
        )


def _rescale(value: int, src: int, dst: int) -> int:
    if dst >= src:
        return value * 10 ** (dst - src)
    return round(value / 10 ** (src - dst))
