"""Book-shape analytics for the slow cycle: walls, vacuums, depth bands, slippage.

Inputs are the book's levels as float arrays, best first. Notional = price x size
(linear contracts and spot; inverse contracts, whose size is a contract count, are not
converted).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Wall rule: size >= P95 of the analysed levels and >= WALL_MIN_MEDIAN x the median
#: (percentiles by nearest rank over both sides' analysed level sizes).
WALL_PERCENTILE = 95.0
WALL_MIN_MEDIAN = 3.0
#: Severity from size / P95: below WALL_MEDIUM low, below WALL_HIGH medium, else high.
WALL_MEDIUM = 2.0
WALL_HIGH = 5.0
#: Vacuum rule: >= VACUUM_MIN_RUN consecutive levels each strictly below P10.
VACUUM_PERCENTILE = 10.0
VACUUM_MIN_RUN = 3
VACUUM_MEDIUM = 5
VACUUM_HIGH = 8
DEPTH_BANDS_PCT = (0.1, 0.5, 1.0, 2.0, 5.0)
SLIPPAGE_NOTIONALS = (10_000.0, 100_000.0, 1_000_000.0)


def nearest_rank(values: FloatArray, pct: float) -> float:
    """Percentile by nearest rank: the smallest value with at least ``pct`` % of the
    values at or below it (always an actual level size, so comparisons are exact)."""
    ordered = np.sort(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def _severity(value: float, medium: float, high: float) -> str:
    return "high" if value >= high else "medium" if value >= medium else "low"


def walls_and_vacuums(
    bid_px: FloatArray, bid_sz: FloatArray, ask_px: FloatArray, ask_sz: FloatArray
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float | None]:
    """Walls, vacuums and the wall size threshold among the given levels (both sides
    share one size population); no verdict (and no threshold) under 10 levels."""
    sizes = np.concatenate([bid_sz, ask_sz])
    if len(sizes) < 10:
        return [], [], None
    p95 = nearest_rank(sizes, WALL_PERCENTILE)
    p10 = nearest_rank(sizes, VACUUM_PERCENTILE)
    median = nearest_rank(sizes, 50.0)
    threshold = max(p95, WALL_MIN_MEDIAN * median)
    walls: list[dict[str, Any]] = []
    vacuums: list[dict[str, Any]] = []
    for side, px, sz in (("bid", bid_px, bid_sz), ("ask", ask_px, ask_sz)):
        for i in np.flatnonzero(sz >= threshold).tolist():
            ratio = float(sz[i]) / p95 if p95 > 0 else float("inf")
            walls.append(
                {
                    "side": side,
                    "price": float(px[i]),
                    "qty": float(sz[i]),
                    "severity": _severity(ratio, WALL_MEDIUM, WALL_HIGH),
                    "x_p95": round(ratio, 4),
                }
            )
        thin: list[bool] = (sz < p10).tolist()
        run_start: int | None = None
        for i in range(len(thin) + 1):
            if i < len(thin) and thin[i]:
                if run_start is None:
                    run_start = i
                continue
            if run_start is not None and i - run_start >= VACUUM_MIN_RUN:
                length = i - run_start
                lo, hi = sorted((float(px[run_start]), float(px[i - 1])))
                vacuums.append(
                    {
                        "from": lo,
                        "to": hi,
                        "severity": _severity(length, VACUUM_MEDIUM, VACUUM_HIGH),
                        "side": side,
                        "levels": length,
                    }
                )
            run_start = None
    return walls, vacuums, threshold


def depth_notional(
    mid: float, bid_px: FloatArray, bid_sz: FloatArray, ask_px: FloatArray, ask_sz: FloatArray
) -> list[dict[str, Any]]:
    """Quote notional resting within +-pct of mid, per side. ``*_covered`` is False when
    the known book ends inside the band (deep levels never seen: a lower bound)."""
    bid_notional = bid_px * bid_sz
    ask_notional = ask_px * ask_sz
    out = []
    for pct in DEPTH_BANDS_PCT:
        lo = mid * (1 - pct / 100)
        hi = mid * (1 + pct / 100)
        out.append(
            {
                "pct": pct,
                "bid_notional": round(float(bid_notional[bid_px >= lo].sum()), 2),
                "ask_notional": round(float(ask_notional[ask_px <= hi].sum()), 2),
                "bid_covered": bool(len(bid_px) and bid_px[-1] < lo),
                "ask_covered": bool(len(ask_px) and ask_px[-1] > hi),
            }
        )
    return out


def _fill(px: FloatArray, sz: FloatArray, notional: float) -> float | None:
    """Average price of spending ``notional`` quote walking the levels; None if the
    known book cannot fill it."""
    cum = np.cumsum(px * sz)
    if len(cum) == 0 or cum[-1] < notional:
        return None
    i = int(np.searchsorted(cum, notional))
    before = float(cum[i - 1]) if i > 0 else 0.0
    qty = float(sz[:i].sum()) + (notional - before) / float(px[i])
    return notional / qty


def slippage(
    mid: float, bid_px: FloatArray, bid_sz: FloatArray, ask_px: FloatArray, ask_sz: FloatArray
) -> list[dict[str, Any]]:
    """Market buy/sell of fixed quote notionals: average fill and cost vs mid in bps
    (null when the known book is too shallow)."""
    out = []
    for notional in SLIPPAGE_NOTIONALS:
        buy = _fill(ask_px, ask_sz, notional)
        sell = _fill(bid_px, bid_sz, notional)
        out.append(
            {
                "notional": notional,
                "buy_avg_price": None if buy is None else round(buy, 8),
                "buy_bps": None if buy is None else round((buy - mid) / mid * 10_000, 4),
                "sell_avg_price": None if sell is None else round(sell, 8),
                "sell_bps": None if sell is None else round((mid - sell) / mid * 10_000, 4),
            }
        )
    return out
