"""Volume profile over (t - 30 min, t], kept incrementally.

Trades are binned by price (bin width = ``bin_ticks`` ticks, tick = 10**-pp) and
aggregated per (fast-cycle bucket, bin), so eviction at a boundary is exact and memory
is bounded by buckets x active bins, not by trade count. Liquidation fills are left out
(they can print far from the market).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


def value_area(volumes: np.ndarray, poc: int, share: float) -> tuple[int, int]:
    """Indices (low, high) of the value area in a dense per-bin volume array.

    Start at the POC bin; while the area holds less than ``share`` of the total, add
    the single larger of the two neighbouring bins (ties: the one above).
    """
    rows: list[float] = volumes.tolist()  # plain floats: the greedy walk is a Python loop
    target = share * sum(rows)
    lo = hi = poc
    acc = rows[poc]
    last = len(rows) - 1
    while acc < target and (lo > 0 or hi < last):
        below = rows[lo - 1] if lo > 0 else -1.0
        above = rows[hi + 1] if hi < last else -1.0
        if above >= below:
            hi += 1
            acc += above
        else:
            lo -= 1
            acc += below
    return lo, hi


class VolumeProfile:
    def __init__(
        self,
        bucket_ns: int,
        window_ns: int,
        bin_ticks: int = 5,
        min_trades: int = 10,
        value_area_share: float = 0.70,
    ) -> None:
        if window_ns % bucket_ns:
            raise ValueError("the profile window must be a whole number of buckets")
        self.bucket_ns = bucket_ns
        self.window_ns = window_ns
        self.window_buckets = window_ns // bucket_ns
        self.bin_ticks = bin_ticks
        self.min_trades = min_trades
        self.value_area_share = value_area_share
        self.pp: int | None = None
        self.sp: int | None = None
        #: (bucket k, bin, size, trades), in bucket order; merged with the tail when equal.
        self._cells: deque[list[int]] = deque()
        self._bins: dict[int, int] = {}
        self._trades = 0

    def add(self, event_ns: int, px: int, sz: int, pp: int, sp: int) -> None:
        if self.pp is None:
            self.pp, self.sp = pp, sp
        if pp != self.pp or sp != self.sp:
            return  # precision changed mid-stream: keep the profile consistent, skip
        k = -(-event_ns // self.bucket_ns)
        b = px // self.bin_ticks
        cells = self._cells
        if cells and cells[-1][0] == k and cells[-1][1] == b:
            cells[-1][2] += sz
            cells[-1][3] += 1
        elif not cells or k >= cells[-1][0]:
            cells.append([k, b, sz, 1])
        else:  # late trade (rare): keep bucket order
            i = len(cells)
            while i > 0 and cells[i - 1][0] > k:
                i -= 1
            cells.insert(i, [k, b, sz, 1])
        self._bins[b] = self._bins.get(b, 0) + sz
        self._trades += 1

    def advance(self, t_ns: int) -> None:
        first_k = t_ns // self.bucket_ns - self.window_buckets
        cells = self._cells
        bins = self._bins
        while cells and cells[0][0] <= first_k:
            _, b, sz, n = cells.popleft()
            left = bins[b] - sz
            if left:
                bins[b] = left
            else:
                del bins[b]
            self._trades -= n

    @property
    def trade_count(self) -> int:
        return self._trades

    def compute(self, t_ns: int, observed_since_ns: int) -> dict[str, Any] | None:
        """POC/VAH/VAL at boundary ``t_ns``; None under ``min_trades`` trades."""
        self.advance(t_ns)
        if self._trades < self.min_trades or not self._bins or self.pp is None:
            return None
        lo_bin = min(self._bins)
        hi_bin = max(self._bins)
        dense = np.zeros(hi_bin - lo_bin + 1, dtype=np.float64)
        for b, v in self._bins.items():
            dense[b - lo_bin] = v
        peak = float(dense.max())
        # POC: the bin with the most volume; ties -> the highest-priced of them.
        poc = int(np.flatnonzero(dense == peak)[-1])
        lo, hi = value_area(dense, poc, self.value_area_share)
        total = float(dense.sum())
        scale = 10**self.pp
        width = self.bin_ticks
        covered = min(self.window_ns, max(0, t_ns - observed_since_ns))
        return {
            "POC": (lo_bin + poc) * width / scale,
            "VAH": (lo_bin + hi) * width / scale,
            "VAL": (lo_bin + lo) * width / scale,
            "window_sec": round(covered / 1e9, 3),
            "trade_count": self._trades,
            "bin_width": width / scale,
            "value_area_pct": round(100 * float(dense[lo : hi + 1].sum()) / total, 4),
            "volume": total / 10 ** (self.sp or 0),
        }
