"""Volume profile over (t - 30 min, t], kept incrementally.

Trades are binned by price (bin width = ``bin_ticks`` ticks, tick = 10**-pp) and
aggregated per (slow-cycle bucket, bin): the profile is only computed at slow
boundaries, so eviction there is exact, and memory is bounded by buckets x active bins,
not by trade count. The cells live in flat numpy arrays (about 28 bytes each) used as a
FIFO: the current bucket's trades are summed in a small dict and appended at the next
compute. Liquidation fills are left out (they can print far from the market).
"""

from __future__ import annotations

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
        """``bucket_ns`` = the slow cycle: ``compute`` is only called at its multiples."""
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
        #: Trades not yet moved to the cell arrays: (bucket k, bin) -> [size, trades].
        self._pending: dict[tuple[int, int], list[int]] = {}
        #: Cells [head, tail) of the arrays: bucket k, bin, size, trades. Ordered by k
        #: unless ``_sorted`` is False (a late trade for an older bucket arrived).
        self._k = np.zeros(0, dtype=np.int64)
        self._bin = np.zeros(0, dtype=np.int64)
        self._size = np.zeros(0, dtype=np.int64)
        self._n = np.zeros(0, dtype=np.int32)
        self._head = 0
        self._tail = 0
        self._sorted = True
        self._trades = 0

    def add(self, event_ns: int, px: int, sz: int, pp: int, sp: int) -> None:
        if self.pp is None:
            self.pp, self.sp = pp, sp
        if pp != self.pp or sp != self.sp:
            return  # precision changed mid-stream: keep the profile consistent, skip
        key = (-(-event_ns // self.bucket_ns), px // self.bin_ticks)
        cell = self._pending.get(key)
        if cell is None:
            self._pending[key] = [sz, 1]
        else:
            cell[0] += sz
            cell[1] += 1
        self._trades += 1

    @property
    def cells(self) -> int:
        """Cells held (bench)."""
        return self._tail - self._head + len(self._pending)

    @property
    def nbytes(self) -> int:
        return self._k.nbytes + self._bin.nbytes + self._size.nbytes + self._n.nbytes

    def _flush(self) -> None:
        """Move the pending cells to the arrays (growing or compacting them)."""
        pending = self._pending
        if not pending:
            return
        keys = sorted(pending)
        m = len(keys)
        live = self._tail - self._head
        if self._tail + m > len(self._k):
            cap = max(1024, 2 * (live + m)) if live + m > len(self._k) // 2 else len(self._k)
            arrays = []
            for a in (self._k, self._bin, self._size, self._n):
                b = np.empty(cap, dtype=a.dtype)
                b[:live] = a[self._head : self._tail]
                arrays.append(b)
            self._k, self._bin, self._size, self._n = arrays
            self._head, self._tail = 0, live
        s, e = self._tail, self._tail + m
        if live and keys[0][0] < self._k[self._tail - 1]:
            self._sorted = False
        self._k[s:e] = [k for k, _ in keys]
        self._bin[s:e] = [b for _, b in keys]
        self._size[s:e] = [pending[key][0] for key in keys]
        self._n[s:e] = [pending[key][1] for key in keys]
        self._tail = e
        pending.clear()

    def advance(self, t_ns: int) -> None:
        first_k = t_ns // self.bucket_ns - self.window_buckets  # buckets <= first_k are out
        self._flush()
        h, e = self._head, self._tail
        if self._sorted:
            cut = h + int(np.searchsorted(self._k[h:e], first_k, side="right"))
            self._trades -= int(self._n[h:cut].sum())
            self._head = cut
            return
        keep = self._k[h:e] > first_k  # rare: compact around the late cells
        self._trades -= int(self._n[h:e][~keep].sum())
        order = np.argsort(self._k[h:e][keep], kind="stable")
        live = len(order)
        for a in (self._k, self._bin, self._size, self._n):
            a[:live] = a[h:e][keep][order]
        self._head, self._tail = 0, live
        self._sorted = True

    @property
    def trade_count(self) -> int:
        return self._trades

    def compute(self, t_ns: int, observed_since_ns: int) -> dict[str, Any] | None:
        """POC/VAH/VAL at slow boundary ``t_ns``; None under ``min_trades`` trades."""
        self.advance(t_ns)
        h, e = self._head, self._tail
        if self._trades < self.min_trades or e == h or self.pp is None:
            return None
        bins = self._bin[h:e]
        lo_bin = int(bins.min())
        hi_bin = int(bins.max())
        # Float sums of integer sizes are exact below 2**53 (as before).
        dense = np.bincount(
            bins - lo_bin, weights=self._size[h:e].astype(np.float64), minlength=hi_bin - lo_bin + 1
        )
        peak = float(dense.max())
        # POC: the bin with the most volume; ties -> the highest-priced of them.
        poc = int(np.flatnonzero(dense == peak)[-1])
        lo, hi = value_area(dense, poc, self.value_area_share)
        total = float(dense.sum())
        scale = 10**self.pp
        width = self.bin_ticks
        covered = min(self.window_ns, max(0, t_ns - observed_since_ns))
        # The seed design's convention: POC = centre of its bin, the value area spans
        # from the lower edge of its lowest bin to the upper edge of its highest, so
        # [VAL, VAH] covers every trade price of the area (bin b = [b·w, (b+1)·w)).
        return {
            "POC": ((lo_bin + poc) * 2 + 1) * width / (2 * scale),
            "VAH": (lo_bin + hi + 1) * width / scale,
            "VAL": (lo_bin + lo) * width / scale,
            "window_sec": round(covered / 1e9, 3),
            "trade_count": self._trades,
            "bin_width": width / scale,
            "value_area_pct": round(100 * float(dense[lo : hi + 1].sum()) / total, 4),
            "volume": total / 10 ** (self.sp or 0),
        }
