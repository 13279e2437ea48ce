"""Flow and volatility measures on exchange event time (schema 1.2, docs/analytics.md).

Every window is ``(t - W, t]`` at a fast boundary ``t``, exact whatever the replay pace:

* ``BucketRing``: per fast-cycle bucket (bucket ``k`` holds trades with time in
  ``((k-1)·F, k·F]``) the taker-buy, taker-sell and total size and the notional
  (price x size), in a fixed ``(4, 30 min / F)`` float64 ring (230 kB at 250 ms). Every
  stored value is an integer (scaled sizes are exact below 2**53; a notional sum is an
  integer-valued double), so each window keeps exact Python-int sums of the values its
  buckets hold: a trade adds its bucket's change, a bucket leaving the window subtracts
  what it holds. O(1) per boundary, no drift, and the sums depend only on the ring's
  content (not on which boundaries were evaluated). CVD, VWAP and the aggressor ratio
  come from them.
* ``TopTrades``: the largest trades of a sliding window, keeping only the trades that
  can still become one of the ``n`` largest (a trade is dropped once ``n`` newer trades
  rank above it: it will leave the window before them). Tens of trades, not thousands.
* ``VolSeconds``: per whole second the mid's return (the book mid at each whole-second
  boundary, carried forward over seconds no boundary was emitted for) and the signed
  taker size, with exact integer (fixed-point) sums over the last 300 seconds, from which
  the realised volatility and Kyle's OLS slope follow in O(1).

Liquidation fills (where the venue marks them) are left out of every measure here and
counted separately (``liquidations_30m``).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

import numpy as np

from shared.report import iso_utc_from_ns

SEC = 1_000_000_000
MIN = 60 * SEC
#: Seconds in a (365-day) year: crypto venues trade every day.
YEAR_SEC = 365 * 86_400
#: Ring rows.
BUY, SELL, QTY, NOTIONAL = 0, 1, 2, 3

#: A large-trade candidate: (rank value, time, arrival seq, side, px, sz); tuples compare
#: by rank value, then newer time, then later arrival (seq is unique).
Candidate = tuple[int, int, int, str, int, int]


def window_sec(t_ns: int, window_ns: int, observed_since_ns: int) -> float:
    """Span of ``(t - window, t]`` actually observed, in seconds."""
    return round(min(window_ns, max(0, t_ns - observed_since_ns)) / SEC, 3)


class BucketRing:
    """Per-fast-bucket trade sums and exact window sums (see the module docstring)."""

    def __init__(self, bucket_ns: int, window_ns: int, windows: tuple[int, ...]) -> None:
        """``windows``: the windows kept summed, in buckets (each <= the ring)."""
        if window_ns % bucket_ns:
            raise ValueError("the flow window must be a whole number of fast cycles")
        self.bucket_ns = bucket_ns
        self.n = window_ns // bucket_ns
        if any(w < 1 or w > self.n for w in windows):
            raise ValueError("every summed window must fit the ring")
        self.windows = windows
        self.rows = np.zeros((4, self.n), dtype=np.float64)
        #: Per window: [buy, sell, qty, notional] over its buckets (exact ints).
        self._sums: list[list[int]] = [[0, 0, 0, 0] for _ in windows]
        #: Newest bucket the ring covers (slots hold buckets head-n+1..head).
        self.head: int | None = None

    def _move_head(self, k: int) -> None:
        head = self.head
        if head is not None and k <= head:
            return
        n = self.n
        rows = self.rows
        if head is None or k - head >= n:
            rows[:] = 0.0
            for sums in self._sums:
                sums[:] = [0, 0, 0, 0]
        else:
            for w, sums in zip(self.windows, self._sums, strict=True):
                if k - head >= w:
                    sums[:] = [0, 0, 0, 0]  # every bucket of the window is new (empty)
                    continue
                for j in range(head - w + 1, k - w + 1):  # buckets leaving this window
                    b, s, q, v = rows[:, j % n].tolist()
                    sums[BUY] -= int(b)
                    sums[SELL] -= int(s)
                    sums[QTY] -= int(q)
                    sums[NOTIONAL] -= int(v)
            # Slots of buckets head+1..k held buckets head+1-n..k-n: out of every window.
            s, e = (head + 1) % n, (k % n) + 1
            if s < e:
                rows[:, s:e] = 0.0
            else:
                rows[:, s:] = 0.0
                rows[:, :e] = 0.0
        self.head = k

    def add(self, event_ns: int, sz: int, side: str, notional: int) -> None:
        k = -(-event_ns // self.bucket_ns)
        self._move_head(k)
        head = self.head
        assert head is not None
        if k <= head - self.n:
            return  # a late trade older than every window still to come
        s = k % self.n
        rows = self.rows
        old = rows[NOTIONAL, s]
        new = old + float(notional)  # a Python int may exceed int64; the double stays integral
        rows[NOTIONAL, s] = new
        d_notional = int(new) - int(old)
        rows[QTY, s] += sz
        row = BUY if side == "B" else SELL if side == "S" else -1
        if row >= 0:
            rows[row, s] += sz
        for w, sums in zip(self.windows, self._sums, strict=True):
            if k > head - w:  # the bucket is in this window (always, unless late)
                sums[QTY] += sz
                sums[NOTIONAL] += d_notional
                if row >= 0:
                    sums[row] += sz

    def advance(self, t_ns: int) -> None:
        self._move_head(-(-t_ns // self.bucket_ns))

    def sums(self, i: int) -> list[int]:
        """[buy, sell, qty, notional] over window ``i`` ending at the head (scaled)."""
        return self._sums[i]

    @property
    def nbytes(self) -> int:
        return self.rows.nbytes


class TopTrades:
    """The ``n`` largest trades in ``(t - window, t]`` (by a rank value, then newer)."""

    def __init__(self, window_ns: int, n: int = 5) -> None:
        self.window_ns = window_ns
        self.n = n
        #: Candidates ordered by (time, seq).
        self._dq: deque[Candidate] = deque()
        self._seq = 0
        self._limit = 64
        self._top: list[Candidate] | None = None

    def __len__(self) -> int:
        return len(self._dq)

    def add(self, event_ns: int, value: int, side: str, px: int, sz: int) -> None:
        self._seq += 1
        item = (value, event_ns, self._seq, side, px, sz)
        dq = self._dq
        if not dq or event_ns >= dq[-1][1]:
            dq.append(item)
        else:  # a late trade: keep the time order (rare)
            i = len(dq)
            while i > 0 and dq[i - 1][1] > event_ns:
                i -= 1
            dq.insert(i, item)
        top = self._top
        if top is not None and (len(top) < self.n or item > top[-1]):
            self._top = None  # it enters the top (a smaller trade leaves the list as is)
        if len(dq) > self._limit:
            self._prune()

    def _prune(self) -> None:
        """Drop every trade ranked below ``n`` newer ones (it can never be shown again)."""
        kept: list[Candidate] = []
        best: list[tuple[int, int, int]] = []  # min-heap of the n best newer ranks
        n = self.n
        for item in reversed(self._dq):
            rank = (item[0], item[1], item[2])
            if len(best) < n:
                heapq.heappush(best, rank)
            elif rank > best[0]:
                heapq.heapreplace(best, rank)
            else:
                continue
            kept.append(item)
        kept.reverse()
        self._dq = deque(kept)
        self._limit = max(64, 2 * len(kept))

    def top(self, t_ns: int) -> list[Candidate]:
        """The ``n`` largest in the window ending at ``t_ns``, largest first (the same
        list object until the window's content changes)."""
        edge = t_ns - self.window_ns
        dq = self._dq
        while dq and dq[0][1] <= edge:
            dq.popleft()
            self._top = None
        if self._top is None:
            self._top = heapq.nlargest(self.n, dq)
        return self._top


#: Fixed point of the per-second terms (r², y): exact integer window sums, no drift.
FX = 1 << 64


class VolSeconds:
    """Per whole second ``i``: the mid return ``m_i / m_{i-1}`` (as ``ln``² and bps) and
    the signed taker size of ``(i-1 s, i]``, with exact integer sums over the seconds
    ``(s - window, s]`` (``s`` = newest second recorded): O(1) per second.

    Slots are a ring of ``size`` seconds; a second enters the sums when its mid is
    recorded and leaves ``window`` seconds later. Mids are carried forward over seconds
    no boundary was emitted for. A late trade for a second already in the window
    updates the sums with it."""

    def __init__(self, window: int = 300, size: int = 512) -> None:
        if size < window + 64:
            raise ValueError("the ring must hold the window and the open seconds")
        self.window = window
        self.size = size
        self._sec = [-1] * size  # second held by each slot
        self._x = [0] * size  # signed taker size (scaled)
        self._r2 = [0] * size  # ln(m_i / m_{i-1})² x FX
        self._y = [0] * size  # 10^4 (m_i / m_{i-1} - 1) x FX
        self._ok = [False] * size  # both mids known
        #: Newest second recorded, and its mid (None = no usable mid).
        self.last: int | None = None
        self._mid: float | None = None
        #: Sums over the valid seconds of the window.
        self.n = self.r2 = self.sx = self.sxx = self.sy = self.sxy = 0

    def add_trade(self, second: int, signed: int) -> None:
        slot = second % self.size
        if self._sec[slot] != second:
            if self.last is not None and second <= self.last:
                return  # older than the ring: out of every window
            self._sec[slot] = second  # a second still open: start it
            self._x[slot] = 0
        x = self._x[slot]
        self._x[slot] = x + signed
        last = self.last
        if last is not None and last - self.window < second <= last and self._ok[slot]:
            self.sx += signed  # a late trade for a second already counted
            self.sxx += 2 * x * signed + signed * signed
            self.sxy += signed * self._y[slot]

    def _enter(self, i: int, prev: float | None, mid: float | None) -> None:
        slot = i % self.size
        if self._sec[slot] != i:  # no trade in that second
            self._sec[slot] = i
            self._x[slot] = 0
        ok = prev is not None and mid is not None
        self._ok[slot] = ok
        if not ok:
            return
        assert prev is not None and mid is not None
        ratio = mid / prev
        r = math.log(ratio)
        r2 = round(r * r * FX)
        y = round((ratio - 1.0) * 1e4 * FX)
        x = self._x[slot]
        self._r2[slot], self._y[slot] = r2, y
        self.n += 1
        self.r2 += r2
        self.sx += x
        self.sxx += x * x
        self.sy += y
        self.sxy += x * y

    def _leave(self, j: int) -> None:
        slot = j % self.size
        if self._sec[slot] != j or not self._ok[slot]:
            return
        x, y = self._x[slot], self._y[slot]
        self.n -= 1
        self.r2 -= self._r2[slot]
        self.sx -= x
        self.sxx -= x * x
        self.sy -= y
        self.sxy -= x * y
        self._ok[slot] = False

    def record(self, t_ns: int, mid: float | None) -> bool:
        """At boundary ``t``: the mid of every whole second up to ``t`` not yet recorded
        (skipped seconds had the state of ``t``). True when a second was added."""
        s, rest = divmod(t_ns, SEC)
        last = self.last
        if last is None:
            if rest:
                return False  # the first second must be a boundary of its own
            self._enter(s, None, mid)
            self.last, self._mid = s, mid
            return True
        if s <= last:
            return False
        w = self.window
        first = last + 1
        if s - last > w:  # every second of the window is new
            self.n = self.r2 = self.sx = self.sxx = self.sy = self.sxy = 0
            for slot in range(self.size):
                self._ok[slot] = False
            first = s - w + 1
        prev = self._mid if first == last + 1 else mid
        for i in range(first, s + 1):
            self._leave(i - w)
            self._enter(i, prev, mid)
            prev = mid
        self.last, self._mid = s, mid
        return True

    def rv_bps(self) -> tuple[float | None, int]:
        """``10^4 · sqrt(Σ ln(m_i / m_{i-1})²)`` over the window, and the returns used."""
        if self.n == 0:
            return None, 0
        return 1e4 * math.sqrt(self.r2 / FX), self.n

    def kyle_lambda(self, min_points: int, sscale: int) -> tuple[float | None, int]:
        """OLS slope of y (bps) on x (base units = scaled / ``sscale``); None under
        ``min_points`` seconds or without variation in x. Exact integer moments."""
        n = self.n
        if n < min_points:
            return None, n
        d = n * self.sxx - self.sx * self.sx
        if d <= 0:
            return None, n
        return (n * self.sxy - self.sx * self.sy) * sscale / (d * FX), n


class FlowWindows:
    """Flow (CVD, VWAP, aggressor ratio, large trades, liquidations) and volatility
    (realised volatility, Kyle's lambda) of one symbol. Prices and sizes arrive scaled
    by the trade windows' fixed precision (``pp``, ``sp``)."""

    def __init__(
        self,
        bucket_ns: int,
        notional: bool = True,
        long_ns: int = 30 * MIN,
        mid_ns: int = 5 * MIN,
        short_ns: int = 30 * SEC,
        top_n: int = 5,
        vol_ns: int = 5 * MIN,
        kyle_min_seconds: int = 30,
    ) -> None:
        for w in (mid_ns, short_ns):
            if w % bucket_ns or w > long_ns:
                raise ValueError("flow windows must be fast-cycle multiples within the longest")
        self.bucket_ns = bucket_ns
        #: False for inverse contracts: trades are ranked by size, notional is null.
        self.notional = notional
        self.long_ns, self.mid_ns, self.short_ns, self.vol_ns = long_ns, mid_ns, short_ns, vol_ns
        self.ring = BucketRing(
            bucket_ns, long_ns, (long_ns // bucket_ns, mid_ns // bucket_ns, short_ns // bucket_ns)
        )
        self.large = TopTrades(mid_ns, top_n)
        #: Liquidation fills in the long window: (time, scaled size), time-ordered.
        self._liq: deque[tuple[int, int]] = deque()
        #: Whole-second mids exist only when the fast cycle divides one second.
        self.per_second = SEC % bucket_ns == 0 and vol_ns % SEC == 0
        self.vol_seconds = vol_ns // SEC
        self.seconds = VolSeconds(self.vol_seconds, self.vol_seconds + 64)
        self.kyle_min_seconds = kyle_min_seconds
        #: (state key, fields): the volatility fields of the last recomputation.
        self._vol: tuple[tuple[int | None, ...], dict[str, Any]] | None = None
        #: JSON form of the large-trade candidates shown (formatted once per trade).
        self._large_json: dict[int, dict[str, Any]] = {}
        self._large_src: list[Candidate] | None = None
        self._large_out: list[dict[str, Any]] = []

    # --- input ----------------------------------------------------------------------

    def add(self, event_ns: int, px: int, sz: int, side: str, liq: bool) -> None:
        if liq:
            dq = self._liq
            if not dq or event_ns >= dq[-1][0]:
                dq.append((event_ns, sz))
            else:
                i = len(dq)
                while i > 0 and dq[i - 1][0] > event_ns:
                    i -= 1
                dq.insert(i, (event_ns, sz))
            return
        notional = px * sz
        self.ring.add(event_ns, sz, side, notional)
        self.large.add(event_ns, notional if self.notional else sz, side, px, sz)
        if side == "B" or side == "S":
            self.seconds.add_trade(-(-event_ns // SEC), sz if side == "B" else -sz)

    def advance(self, t_ns: int) -> None:
        self.ring.advance(t_ns)
        edge = t_ns - self.long_ns
        dq = self._liq
        while dq and dq[0][0] <= edge:
            dq.popleft()

    # --- evaluation at a boundary (after ``advance(t)``) ------------------------------

    def flow_fields(self, t_ns: int, since_ns: int, pp: int, sp: int) -> dict[str, Any]:
        ring = self.ring
        long_, mid, short = ring.sums(0), ring.sums(1), ring.sums(2)
        sscale = 10**sp
        pscale = 10**pp
        long_w = window_sec(t_ns, self.long_ns, since_ns)
        mid_w = window_sec(t_ns, self.mid_ns, since_ns)
        liq_qty = sum(sz for _, sz in self._liq)
        return {
            "cvd_30m": (long_[BUY] - long_[SELL]) / sscale,
            "cvd_30m_window_sec": long_w,
            "vwap_5m": _vwap(mid, pscale),
            "vwap_5m_window_sec": mid_w,
            "vwap_30m": _vwap(long_, pscale),
            "vwap_30m_window_sec": long_w,
            "aggressor_buy_ratio_30s": (
                round(short[BUY] / short[QTY], 8) if short[QTY] > 0 else None
            ),
            "aggressor_buy_ratio_30s_window_sec": window_sec(t_ns, self.short_ns, since_ns),
            "large_trades_5m": self._large(t_ns, pscale, sscale),
            "large_trades_5m_window_sec": mid_w,
            "liquidations_30m": {"count": len(self._liq), "qty": liq_qty / sscale},
        }

    def _large(self, t_ns: int, pscale: int, sscale: int) -> list[dict[str, Any]]:
        top = self.large.top(t_ns)
        if top is self._large_src:
            return list(self._large_out)
        cache = self._large_json
        out: list[dict[str, Any]] = []
        for _, at, seq, side, px, sz in top:
            item = cache.get(seq)
            if item is None:
                item = cache[seq] = {
                    "time": iso_utc_from_ns(at),
                    "side": "buy" if side == "B" else "sell" if side == "S" else None,
                    "price": px / pscale,
                    "qty": sz / sscale,
                    "notional": round(px * sz / (pscale * sscale), 8) if self.notional else None,
                }
            out.append(item)
        if len(cache) > 4 * self.large.n:
            shown = {c[2] for c in top}
            self._large_json = {k: v for k, v in cache.items() if k in shown}
        self._large_src, self._large_out = top, out
        return list(out)

    def volatility_fields(self, t_ns: int, mid: float | None, sp: int) -> dict[str, Any]:
        """Realised volatility and Kyle's lambda over the whole seconds of
        ``(t - 5 min, t]``: they change only when a second is recorded (or a late trade
        lands in one), so the fields are rebuilt only then."""
        if not self.per_second:
            return dict(_NO_VOL)
        secs = self.seconds
        changed = secs.record(t_ns, mid)
        key = (secs.last, secs.n, secs.sx, secs.sxx, secs.sxy)
        cached = self._vol
        if cached is not None and not changed and cached[0] == key:
            return dict(cached[1])
        rv, n_rv = secs.rv_bps()
        lam, n_k = secs.kyle_lambda(self.kyle_min_seconds, 10**sp)
        out = {
            "rv_5m_bps": None if rv is None else round(rv, 6),
            "rv_5m_annualized_bps": (
                None if rv is None else round(rv * math.sqrt(YEAR_SEC / n_rv), 4)
            ),
            "rv_5m_window_sec": n_rv,
            "kyle_lambda_5m": None if lam is None else round(lam, 10),
            "kyle_lambda_5m_window_sec": n_k,
        }
        self._vol = (key, out)
        return dict(out)

    @property
    def nbytes(self) -> int:
        return self.ring.nbytes


_NO_VOL: dict[str, Any] = {
    "rv_5m_bps": None,
    "rv_5m_annualized_bps": None,
    "rv_5m_window_sec": 0,
    "kyle_lambda_5m": None,
    "kyle_lambda_5m_window_sec": 0,
}


def _vwap(sums: list[int], pscale: int) -> float | None:
    """Σ price·qty / Σ qty from exact window sums (scaled notional over scaled size)."""
    qty = sums[QTY]
    if qty <= 0:
        return None
    return round(sums[NOTIONAL] / (qty * pscale), 8)
