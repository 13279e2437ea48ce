"""Trade windows on exchange event time: flow (10 s / 30 s), 24 h statistics, and the
schema 1.2 flow measures (``flow.FlowWindows``: CVD, VWAP, aggressor ratio, large trades).

All quantities stay scaled integers (exact sums). Liquidation fills (``liq``) count in
volume and flow but never set a price (last, high, low, open): they can print far from
the market.

The 24 h statistics live in a fixed ring of at most ``max_blocks`` (1440) time blocks,
block ``j`` holding trades with time in ``((j-1)·G, j·G]``. ``G`` is the smallest
multiple of the fast cycle that divides the window and gives at most ``max_blocks``
blocks: 60 s for 24 h at 250 ms. At boundary ``t`` the window is the ``window / G``
blocks ending with the one containing ``t``, i.e. trades in ``(ceil(t/G)·G - window, t]``:
exactly ``(t - window, t]`` when ``t`` is a multiple of ``G`` (always, for windows of up
to 1440 fast cycles), otherwise short of it by less than ``G`` at the trailing edge
(``stats_24h_window_sec`` reports the span). Memory is a few numpy arrays of
``max_blocks`` slots (about 60 kB), whatever the trade rate or the window's age.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from services.calc.analytics.flow import FlowWindows

SEC = 1_000_000_000
DAY_NS = 86_400 * SEC
#: Ring size of the 24 h statistics (1440 = one block per minute over 24 h).
MAX_BLOCKS = 1440
#: Marks a block slot without a priced trade (prices are > 0).
_NONE = 0


def block_width(window_ns: int, cycle_ns: int, max_blocks: int = MAX_BLOCKS) -> int:
    """Smallest multiple of ``cycle_ns`` dividing ``window_ns`` into <= ``max_blocks``."""
    if window_ns % cycle_ns:
        raise ValueError("the statistics window must be a whole number of fast cycles")
    cycles = window_ns // cycle_ns
    d = max(1, -(-cycles // max_blocks))
    while cycles % d:
        d += 1
    return d * cycle_ns


@dataclass(frozen=True, slots=True)
class Stats24h:
    """Scaled-int 24 h statistics at one boundary (None where no trade sets them)."""

    high: int | None
    low: int | None
    open: int | None
    last: int | None
    volume: int
    #: Span of the window in ns (``window`` when the boundary is block-aligned).
    span_ns: int


def _insert_sorted(dq: deque[tuple[int, int]], item: tuple[int, int]) -> None:
    """Insert keeping the deque ordered by its first element (late arrivals are rare)."""
    i = len(dq)
    while i > 0 and dq[i - 1][0] > item[0]:
        i -= 1
    dq.insert(i, item)


class StatsRing:
    """24 h OHLCV over a ring of time blocks (see the module docstring)."""

    def __init__(self, window_ns: int, cycle_ns: int, max_blocks: int = MAX_BLOCKS) -> None:
        self.window_ns = window_ns
        self.cycle_ns = cycle_ns
        self.block_ns = block_width(window_ns, cycle_ns, max_blocks)
        n = self.n = window_ns // self.block_ns
        self._block = np.full(n, -1, dtype=np.int64)  # block id held by each slot
        self._volume = np.zeros(n, dtype=np.int64)
        self._high = np.zeros(n, dtype=np.int64)
        self._low = np.zeros(n, dtype=np.int64)
        self._open = np.zeros(n, dtype=np.int64)
        #: Fast bucket of each slot's open (an older bucket's trade arriving late wins).
        self._open_k = np.zeros(n, dtype=np.int64)
        #: Newest block id the ring covers; blocks <= head - n are out of every window.
        self.head: int | None = None
        self._vol_sum = 0
        #: (fast bucket, price) of the newest priced bucket (the window's last price).
        self._last_k = -1
        self._last_px = _NONE
        #: Cached over the blocks before ``head`` (None = recompute): high, low, open.
        self._older: tuple[int, int, int] | None = None

    def _slot(self, j: int) -> int:
        return j % self.n

    def _move_head(self, j: int) -> None:
        """Make ``j`` the newest block, evicting the blocks that fall out."""
        head = self.head
        if head is not None and j <= head:
            return
        n = self.n
        if head is None or j - head >= n:
            self._block[:] = -1
            self._volume[:] = 0
            self._vol_sum = 0
        elif j == head + 1:  # the common case: one new block a minute
            s = j % n
            if self._block[s] >= 0:
                self._vol_sum -= int(self._volume[s])
                self._block[s] = -1
                self._volume[s] = 0
        else:  # the slots of blocks head+1..j hold blocks head+1-n..j-n: all out now
            slots = np.arange(head + 1, j + 1, dtype=np.int64) % n
            self._vol_sum -= int(self._volume[slots].sum())
            self._block[slots] = -1
            self._volume[slots] = 0
        self.head = j
        self._older = None

    def add(self, event_ns: int, px: int | None, sz: int) -> None:
        j = -(-event_ns // self.block_ns)
        self._move_head(j)
        assert self.head is not None
        if j <= self.head - self.n:
            return  # older than every window still to come
        s = j % self.n
        if self._block[s] != j:
            self._block[s] = j
            self._volume[s] = 0
            self._high[s] = self._low[s] = self._open[s] = _NONE
        self._volume[s] += sz
        self._vol_sum += sz
        if px is None:
            return
        k = -(-event_ns // self.cycle_ns)
        if self._high[s] == _NONE:
            self._high[s] = self._low[s] = self._open[s] = px
            self._open_k[s] = k
        else:
            if px > self._high[s]:
                self._high[s] = px
            if px < self._low[s]:
                self._low[s] = px
            if k < self._open_k[s]:
                self._open[s] = px
                self._open_k[s] = k
        if k >= self._last_k:
            self._last_k, self._last_px = k, px
        if j < self.head:
            self._older = None  # a late trade changed an older block

    def advance(self, t_ns: int) -> None:
        self._move_head(-(-t_ns // self.block_ns))

    def _older_stats(self) -> tuple[int, int, int]:
        """(high, low, open) over the window's blocks before the head (0 = none)."""
        if self._older is None:
            assert self.head is not None
            first = self.head - self.n + 1
            ids = np.arange(first, self.head, dtype=np.int64)
            slots = ids % self.n
            ok = (self._block[slots] == ids) & (self._high[slots] != _NONE)
            if ok.any():
                sl = slots[ok]
                self._older = (
                    int(self._high[sl].max()),
                    int(self._low[sl].min()),
                    int(self._open[sl[0]]),
                )
            else:
                self._older = (_NONE, _NONE, _NONE)
        return self._older

    def stats(self, t_ns: int) -> Stats24h:
        """Statistics after ``advance(t_ns)``."""
        if self.head is None:
            return Stats24h(None, None, None, None, 0, self.window_ns)
        span = t_ns - (self.head - self.n) * self.block_ns
        high, low, open_px = self._older_stats()
        s = self.head % self.n
        if self._block[s] == self.head and self._high[s] != _NONE:
            high = max(high, int(self._high[s]))
            low = int(self._low[s]) if low == _NONE else min(low, int(self._low[s]))
            if open_px == _NONE:
                open_px = int(self._open[s])
        first_k = (self.head - self.n) * self.block_ns // self.cycle_ns
        last = self._last_px if self._last_k > first_k and self._last_px != _NONE else None
        return Stats24h(
            high=high or None,
            low=low or None,
            open=open_px or None,
            last=last,
            volume=self._vol_sum,
            span_ns=span,
        )

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self._block, self._volume, self._high, self._low, self._open, self._open_k)
        )


class TradeWindows:
    """Sliding windows of trades: count over ``count_window``, net taker flow over
    ``net_window`` (exact, per trade), and 24 h OHLCV over a ``StatsRing``."""

    def __init__(
        self,
        bucket_ns: int,
        count_window_ns: int = 10 * SEC,
        net_window_ns: int = 30 * SEC,
        stats_window_ns: int = DAY_NS,
        max_blocks: int = MAX_BLOCKS,
        flow: FlowWindows | None = None,
    ) -> None:
        self.bucket_ns = bucket_ns
        #: CVD, VWAP, aggressor ratio, large trades, volatility (schema 1.2 fields).
        self.flow = flow if flow is not None else FlowWindows(bucket_ns)
        self.count_window_ns = count_window_ns
        self.net_window_ns = net_window_ns
        self.ring = StatsRing(stats_window_ns, bucket_ns, max_blocks)
        #: Precision of the stored integers (fixed by the first trade; later trades with
        #: another precision are rescaled to it).
        self.pp: int | None = None
        self.sp: int | None = None
        self._count: deque[tuple[int, int]] = deque()  # (event_ns, 0)
        self._net: deque[tuple[int, int]] = deque()  # (event_ns, signed size)
        self._net_sum = 0
        #: Last trade price overall (not windowed), scaled by ``pp``.
        self.last_price: int | None = None
        self.trades_seen = 0
        self._t_ns = 0

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
        self.ring.add(event_ns, None if liq or px <= 0 else px, sz)
        self.flow.add(event_ns, px, sz, side, liq)
        if not liq:
            self.last_price = px

    # --- evaluation at a boundary ----------------------------------------------------

    def advance(self, t_ns: int) -> None:
        """Evict everything outside the windows ending at ``t_ns`` (monotonic calls)."""
        self._t_ns = t_ns
        edge = t_ns - self.count_window_ns
        count = self._count
        while count and count[0][0] <= edge:
            count.popleft()
        edge = t_ns - self.net_window_ns
        net = self._net
        while net and net[0][0] <= edge:
            self._net_sum -= net.popleft()[1]
        self.ring.advance(t_ns)
        self.flow.advance(t_ns)

    def trade_count(self) -> int:
        """Trades in (t - count window, t] after ``advance(t)``."""
        return len(self._count)

    def net_flow(self) -> int:
        """Taker-buy minus taker-sell size in (t - net window, t] after ``advance(t)``."""
        return self._net_sum

    def stats(self) -> Stats24h:
        """24 h statistics after ``advance(t)``."""
        return self.ring.stats(self._t_ns)


def _rescale(value: int, src: int, dst: int) -> int:
    if dst >= src:
        return value * 10 ** (dst - src)
    return round(value / 10 ** (src - dst))
