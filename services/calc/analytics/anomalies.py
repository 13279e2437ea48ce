"""Anomaly heuristics for the slow cycle: iceberg, spoofing, flash-crash risk.

These are documented heuristics over what an L2 feed can show, not proofs of intent.
State is fed per entry (hooks) and evaluated at slow boundaries; every rule and
threshold is in docs/analytics.md.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SEC = 1_000_000_000


@dataclass(frozen=True)
class AnomalyParams:
    #: Iceberg: volume traded at one price within the window >= ratio x the largest size
    #: displayed there at trade time, at least the wall threshold in size, in at least
    #: ``iceberg_min_trades`` fills, and the level still rests at evaluation.
    iceberg_window_ns: int = 30 * SEC
    iceberg_ratio: tuple[float, float, float] = (5.0, 10.0, 20.0)  # low, medium, high
    iceberg_min_trades: int = 5
    #: Spoofing: a large level (>= the wall threshold) within ``spoof_near_bps`` of the
    #: best price that loses >= ``spoof_drop`` of its peak within ``spoof_life_ns`` while
    #: trades at that price filled < ``spoof_fill`` of the drop = one pull.
    spoof_near_bps: float = 10.0
    spoof_life_ns: int = 10 * SEC
    spoof_drop: float = 0.8
    spoof_fill: float = 0.2
    spoof_window_ns: int = 60 * SEC
    #: Pulls in the window vs their median over ``spoof_baseline`` slow cycles (market
    #: makers cancel all the time: only a burst above the symbol's own norm counts).
    spoof_ratio: tuple[float, float, float] = (3.0, 5.0, 10.0)  # low, medium, high
    spoof_min_pulls: int = 10
    spoof_baseline: int = 900
    spoof_min_baseline: int = 30
    #: Flash-crash risk: depth within ``crash_band_pct`` of mid on one side below
    #: ``crash_thin`` x its median over ``crash_history`` slow cycles.
    crash_band_pct: float = 1.0
    crash_thin: float = 0.25
    crash_history: int = 150
    crash_min_history: int = 15
    crash_move_bps: float = 50.0
    crash_move_ns: int = 60 * SEC
    crash_slippage_x: float = 10.0


def _grade(value: float, cuts: tuple[float, float, float]) -> str | None:
    if value >= cuts[2]:
        return "high"
    if value >= cuts[1]:
        return "medium"
    if value >= cuts[0]:
        return "low"
    return None


class _Tracked:
    __slots__ = ("filled", "peak", "since")

    def __init__(self, since: int, size: float) -> None:
        self.since = since
        self.peak = size
        self.filled = 0.0


class AnomalyState:
    def __init__(self, params: AnomalyParams | None = None) -> None:
        self.p = params or AnomalyParams()
        #: (event_ns, side of the resting order, price, size, displayed size at trade time)
        self._fills: deque[tuple[int, str, float, float, float]] = deque()
        #: Large levels near the top being watched: (side, price) -> state.
        self._tracked: dict[tuple[str, float], _Tracked] = {}
        self._pulls: deque[tuple[int, str, float, float]] = deque()
        #: Wall threshold from the last slow cycle (size units); None until then.
        self.large_size: float | None = None
        #: Pull counts of past evaluations (the spoofing baseline).
        self._pull_counts: deque[int] = deque()
        #: Per slow cycle: (t, mid, bid depth, ask depth, buy slip bps, sell slip bps).
        self._history: deque[tuple[int, float, float, float, float | None, float | None]] = deque()

    # --- hooks --------------------------------------------------------------------

    def watched_prices(self) -> dict[tuple[str, float], _Tracked]:
        """The levels the spoofing watch follows ((side, price) keys)."""
        return self._tracked

    def on_fill(
        self, event_ns: int, resting_side: str, price: float, size: float, shown: float
    ) -> None:
        """A trade against ``resting_side`` (``bid`` for a taker sell) at ``price``;
        ``shown`` = size the book displayed at that price when the trade arrived."""
        self._fills.append((event_ns, resting_side, price, size, shown))
        tracked = self._tracked.get((resting_side, price))
        if tracked is not None:
            tracked.filled += size

    def on_level(
        self, event_ns: int, side: str, price: float, size: float, best: float | None
    ) -> None:
        """A level changed to ``size`` (0 = removed); ``best`` = that side's best price."""
        key = (side, price)
        tracked = self._tracked.get(key)
        if tracked is not None:
            if size <= tracked.peak * (1 - self.p.spoof_drop):
                drop = tracked.peak - size
                quick = event_ns - tracked.since <= self.p.spoof_life_ns
                if quick and tracked.filled < self.p.spoof_fill * drop:
                    self._pulls.append((event_ns, side, price, drop))
                del self._tracked[key]
            elif size > tracked.peak:
                tracked.peak = size
            return
        large = self.large_size
        if large is None or size < large or best is None or best <= 0:
            return
        if abs(price - best) / best * 10_000 <= self.p.spoof_near_bps:
            self._tracked[key] = _Tracked(event_ns, size)

    # --- evaluation ---------------------------------------------------------------

    def evaluate(
        self,
        t_ns: int,
        resting: Callable[[str, float], float],
        mid: float,
        depth_band: tuple[float, float] | None,
        slip: tuple[float | None, float | None] | None,
        large_size: float,
    ) -> list[dict[str, Any]]:
        """Anomalies at slow boundary ``t_ns``. ``resting(side, price)`` = size resting
        there now (0 if none); ``depth_band`` = (bid, ask) notional within the crash band;
        ``slip`` = (buy, sell) bps for the reference notional (both None: the size unit
        has no notional, the crash-risk rule is skipped); ``large_size`` = the
        current wall threshold (used by the spoofing watch until the next evaluation)."""
        self.large_size = large_size
        out: list[dict[str, Any]] = []
        out.extend(self._icebergs(t_ns, resting, large_size))
        spoof = self._spoofing(t_ns)
        if spoof:
            out.append(spoof)
        if depth_band is not None and slip is not None:  # no notional: no crash-risk rule
            crash = self._crash_risk(t_ns, mid, depth_band, slip)
            if crash:
                out.append(crash)
        return out

    def _icebergs(
        self, t_ns: int, resting: Callable[[str, float], float], large_size: float
    ) -> list[dict[str, Any]]:
        fills = self._fills
        while fills and fills[0][0] <= t_ns - self.p.iceberg_window_ns:
            fills.popleft()
        per_level: dict[tuple[str, float], list[float]] = {}
        for _, side, price, size, shown in fills:
            row = per_level.setdefault((side, price), [0.0, 0.0, 0])
            row[0] += size
            row[1] = max(row[1], shown)
            row[2] += 1
        out = []
        for (side, price), (volume, shown, count) in sorted(per_level.items()):
            if (
                resting(side, price) <= 0
                or shown <= 0
                or count < self.p.iceberg_min_trades
                or volume < large_size
            ):
                continue
            ratio = volume / shown
            severity = _grade(ratio, self.p.iceberg_ratio)
            if severity:
                out.append(
                    {
                        "type": "iceberg",
                        "severity": severity,
                        "note": (
                            f"{volume:g} traded at {side} {price:g} over "
                            f"{self.p.iceberg_window_ns // SEC}s in {count} fills, "
                            f"{ratio:.1f}x the most ever shown there ({shown:g}); level still rests"
                        ),
                        "side": side,
                        "price": price,
                        "ratio": round(ratio, 2),
                    }
                )
        return out

    def _spoofing(self, t_ns: int) -> dict[str, Any] | None:
        pulls = self._pulls
        while pulls and pulls[0][0] <= t_ns - self.p.spoof_window_ns:
            pulls.popleft()
        # Forget watched levels that outlived the life limit (no longer spoof candidates).
        stale = [k for k, v in self._tracked.items() if t_ns - v.since > self.p.spoof_life_ns]
        for key in stale:
            del self._tracked[key]
        counts = self._pull_counts
        baseline = statistics.median(counts) if len(counts) >= self.p.spoof_min_baseline else None
        counts.append(len(pulls))
        while len(counts) > self.p.spoof_baseline:
            counts.popleft()
        if baseline is None or len(pulls) < self.p.spoof_min_pulls:
            return None
        ratio = len(pulls) / max(baseline, 1.0)
        severity = _grade(ratio, self.p.spoof_ratio)
        if severity is None:
            return None
        biggest = max(pulls, key=lambda x: x[3])
        return {
            "type": "spoofing",
            "severity": severity,
            "note": (
                f"{len(pulls)} large orders near the top pulled within "
                f"{self.p.spoof_life_ns // SEC}s of appearing, mostly unfilled, in the last "
                f"{self.p.spoof_window_ns // SEC}s ({ratio:.1f}x the usual {baseline:g}); "
                f"largest {biggest[3]:g} at {biggest[1]} {biggest[2]:g}"
            ),
            "pulls": len(pulls),
            "baseline": baseline,
        }

    def _crash_risk(
        self,
        t_ns: int,
        mid: float,
        depth_band: tuple[float, float],
        slip: tuple[float | None, float | None],
    ) -> dict[str, Any] | None:
        hist = self._history
        result = None
        best_flags = 0
        if len(hist) >= self.p.crash_min_history:
            med_bid = statistics.median(h[2] for h in hist)
            med_ask = statistics.median(h[3] for h in hist)
            past = next((h for h in hist if h[0] >= t_ns - self.p.crash_move_ns), None)
            move_bps = (mid - past[1]) / past[1] * 10_000 if past and past[1] > 0 else 0.0
            buy_slips = [h[4] for h in hist if h[4] is not None]
            sell_slips = [h[5] for h in hist if h[5] is not None]
            for side, depth, med, slip_now, slips, direction in (
                ("bid", depth_band[0], med_bid, slip[1], sell_slips, -1),
                ("ask", depth_band[1], med_ask, slip[0], buy_slips, 1),
            ):
                if med <= 0 or depth >= self.p.crash_thin * med:
                    continue
                flags = ["thin"]
                if direction * move_bps >= self.p.crash_move_bps:
                    flags.append("moving")
                usual = statistics.median(slips) if slips else None
                if slip_now is None or (
                    usual is not None and usual > 0 and slip_now >= self.p.crash_slippage_x * usual
                ):
                    flags.append("slippage")
                if len(flags) <= best_flags:
                    continue
                best_flags = len(flags)
                result = {
                    "type": "flash_crash_risk",
                    "severity": ("low", "medium", "high")[len(flags) - 1],
                    "note": (
                        f"{side} depth within {self.p.crash_band_pct:g}% of mid is "
                        f"{depth / med:.0%} of its recent median; mid moved {move_bps:+.1f} bps "
                        f"in {self.p.crash_move_ns // SEC}s; signals: {', '.join(flags)}"
                    ),
                    "side": side,
                    "signals": flags,
                }
        hist.append((t_ns, mid, depth_band[0], depth_band[1], slip[0], slip[1]))
        while len(hist) > self.p.crash_history:
            hist.popleft()
        return result
