"""Slow-cycle analytics: liquidity (walls, vacuums, volume profile), depth bands,
slippage and order-flow imbalance. Computed every slow boundary and merged into the
fast reports that follow, without overwriting any fast field."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.calc.analytics.anomalies import AnomalyParams, AnomalyState
from services.calc.analytics.book import L2Book, Level
from services.calc.analytics.liquidity import depth_notional, slippage, walls_and_vacuums
from services.calc.analytics.profile import VolumeProfile
from shared.report import iso_utc_from_ns
from shared.wire import DeltaPayload, TradePayload

SEC = 1_000_000_000


@dataclass(frozen=True)
class SlowParams:
    profile_window_ns: int = 1_800 * SEC
    profile_bin_ticks: int = 5
    profile_min_trades: int = 10
    value_area_share: float = 0.70
    #: Levels per side analysed for walls and vacuums.
    liquidity_levels: int = 50
    ofi_windows_ns: tuple[int, ...] = (10 * SEC, 30 * SEC)
    anomalies: AnomalyParams = field(default_factory=AnomalyParams)
    #: Slippage notional (quote) the flash-crash rule watches.
    crash_slippage_notional: float = 100_000.0


def ofi_event(before: tuple[Level | None, Level | None], after: tuple[Level, Level]) -> int:
    """Cont-Kukanov-Stoikov order-flow contribution of one book update (scaled size).

    e = qb'·1[pb' >= pb] - qb·1[pb' <= pb] - qa'·1[pa' <= pa] + qa·1[pa' >= pa]
    """
    (bid0, ask0), (bid1, ask1) = before, after
    if bid0 is None or ask0 is None:
        return 0
    (pb, qb), (pa, qa) = bid0, ask0
    (pb1, qb1), (pa1, qa1) = bid1, ask1
    e = 0
    if pb1 >= pb:
        e += qb1
    if pb1 <= pb:
        e -= qb
    if pa1 <= pa:
        e -= qa1
    if pa1 >= pa:
        e += qa
    return e


class SlowState:
    def __init__(self, params: SlowParams, slow_cycle_ns: int, notional: bool = True) -> None:
        self.params = params
        #: False when price x size is not a quote amount (inverse contracts).
        self.notional = notional
        # Keyed by slow cycle: the profile is only computed at slow boundaries.
        self.profile = VolumeProfile(
            slow_cycle_ns,
            params.profile_window_ns,
            params.profile_bin_ticks,
            params.profile_min_trades,
            params.value_area_share,
        )
        self._ofi: deque[tuple[int, int]] = deque()  # (event_ns, contribution) non-zero only
        self._ofi_sp = 0
        self.anomalies = AnomalyState(params.anomalies)
        #: The wall threshold in scaled size units (spoofing watch prefilter).
        self._large_scaled: int | None = None

    # --- per-entry hooks -------------------------------------------------------------

    def on_snap(self, book: L2Book) -> None:
        """A snapshot is a reset, not an order-flow event."""

    def on_delta(
        self,
        event_ns: int,
        before: tuple[Level | None, Level | None],
        book: L2Book,
        delta: DeltaPayload | None = None,
    ) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if delta is not None:
            self._watch_levels(event_ns, delta, book, bid, ask)
        if bid is None or ask is None:
            return
        e = ofi_event(before, (bid, ask))
        if e:
            self._ofi_sp = book.sp
            if self._ofi and event_ns < self._ofi[-1][0]:
                event_ns = self._ofi[-1][0]  # keep the deque ordered (late update)
            self._ofi.append((event_ns, e))

    def _watch_levels(
        self, event_ns: int, delta: DeltaPayload, book: L2Book, bid: Level | None, ask: Level | None
    ) -> None:
        """Feed large or watched levels to the spoofing watch (cheap prefilter first)."""
        large = self._large_scaled
        if large is None:
            return
        watched = self.anomalies.watched_prices()
        pscale, sscale = 10**book.pp, 10**book.sp
        for side, levels, best in (("bid", delta.b, bid), ("ask", delta.a, ask)):
            best_px = None if best is None else best[0] / pscale
            for price, size in levels:
                if size >= large or (side, price / pscale) in watched:
                    self.anomalies.on_level(event_ns, side, price / pscale, size / sscale, best_px)

    def on_trade(self, event_ns: int, trade: TradePayload, book: L2Book | None = None) -> None:
        if trade.liq:
            return
        self.profile.add(event_ns, trade.px, trade.sz, trade.pp, trade.sp)
        if book is None or not book.has_book or trade.side not in ("B", "S"):
            return
        resting_side = "ask" if trade.side == "B" else "bid"
        shown = (book.asks if resting_side == "ask" else book.bids).get(trade.px, 0)
        pscale, sscale = 10**trade.pp, 10**trade.sp
        self.anomalies.on_fill(
            event_ns, resting_side, trade.px / pscale, trade.sz / sscale, shown / sscale
        )

    # --- evaluation -------------------------------------------------------------------

    def ofi(self, t_ns: int) -> dict[str, Any]:
        longest = max(self.params.ofi_windows_ns)
        dq = self._ofi
        while dq and dq[0][0] <= t_ns - longest:
            dq.popleft()
        scale = 10**self._ofi_sp
        out: dict[str, Any] = {}
        for w in self.params.ofi_windows_ns:
            edge = t_ns - w
            out[f"ofi_{w // SEC}s"] = sum(e for t, e in dq if t > edge) / scale
        return out

    def _anomalies(
        self,
        t_ns: int,
        book: L2Book,
        mid: float,
        bands: list[dict[str, Any]] | None,
        slips: list[dict[str, Any]] | None,
        large: float,
    ) -> list[dict[str, Any]]:
        pscale, sscale = 10**book.pp, 10**book.sp
        self._large_scaled = round(large * sscale)

        def resting(side: str, price: float) -> float:
            levels = book.bids if side == "bid" else book.asks
            return levels.get(round(price * pscale), 0) / sscale

        ap = self.params.anomalies
        if bands is None or slips is None:
            return self.anomalies.evaluate(t_ns, resting, mid, None, None, large)
        band = next(b for b in bands if b["pct"] == ap.crash_band_pct)
        slip = next(s for s in slips if s["notional"] == self.params.crash_slippage_notional)
        return self.anomalies.evaluate(
            t_ns,
            resting,
            mid,
            (band["bid_notional"], band["ask_notional"]),
            (slip["buy_bps"], slip["sell_bps"]),
            large,
        )

    def compute(self, t_ns: int, book: L2Book, observed_since_ns: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"slow_generated_at": iso_utc_from_ns(t_ns)}
        liquidity: dict[str, Any] = {}
        bid, ask = book.best_bid(), book.best_ask()
        if book.has_book and not book.is_crossed() and bid and ask:
            pscale, sscale = 10**book.pp, 10**book.sp
            n = self.params.liquidity_levels
            top_b = np.array(book.top_bids(n), dtype=np.float64).reshape(-1, 2)
            top_a = np.array(book.top_asks(n), dtype=np.float64).reshape(-1, 2)
            walls, vacuums, large = walls_and_vacuums(
                top_b[:, 0] / pscale,
                top_b[:, 1] / sscale,
                top_a[:, 0] / pscale,
                top_a[:, 1] / sscale,
            )
            liquidity["walls"] = walls
            liquidity["vacuums"] = vacuums
            bp, bs = book.sorted_side(is_bid=True)
            ap, as_ = book.sorted_side(is_bid=False)
            sides = (bp / pscale, bs / sscale, ap / pscale, as_ / sscale)
            mid = (bid[0] + ask[0]) / (2 * pscale)
            bands: list[dict[str, Any]] | None = None
            slips: list[dict[str, Any]] | None = None
            if self.notional:
                bands = depth_notional(mid, *sides)
                slips = slippage(mid, *sides)
                out["depth_notional"] = bands
                out["slippage"] = slips
            if large is not None:
                out["anomalies"] = self._anomalies(t_ns, book, mid, bands, slips, large)
        profile = self.profile.compute(
            t_ns, t_ns if observed_since_ns is None else observed_since_ns
        )
        if profile is not None:
            liquidity["volume_profile"] = profile
        if liquidity:
            out["liquidity"] = liquidity
        out["order_flow_imbalance"] = self.ofi(t_ns)
        return out
