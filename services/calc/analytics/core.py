"""One symbol's analytics state machine: wire entries in, (cycle time, report) out.

``SymbolCore.apply(entry)`` first closes every fast-cycle boundary before the entry's
event time, then applies the entry. ``replay(entries, ...)`` is the offline entry point:
the same code path the worker runs, without Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from services.calc.analytics.book import BookState, DeltaOutcome, L2Book
from services.calc.analytics.derivatives import DerivativesState
from services.calc.analytics.fields import (
    book_condition,
    depth_fields,
    health,
    ingestion_status,
    top_of_book,
)
from services.calc.analytics.flow import FlowWindows
from services.calc.analytics.scheduler import CycleClock
from services.calc.analytics.slow import SlowParams, SlowState
from services.calc.analytics.trades import DAY_NS, MAX_BLOCKS, SEC, TradeWindows
from shared.health import DEGRADED_AGE_MS
from shared.report import SCHEMA_VERSION, iso_utc_from_ns
from shared.wire import (
    DeltaPayload,
    Entry,
    LiquidationPayload,
    MarkPayload,
    OpenInterestPayload,
    SnapPayload,
    StatusPayload,
    TickerPayload,
    TradePayload,
)

MS = 1_000_000
_DERIVATIVE_PAYLOADS = (MarkPayload, OpenInterestPayload, LiquidationPayload)

#: Feed states and book conditions that claim live data: shown as "silent" / "stale"
#: once the data is older than the degraded limit.
_LIVE = frozenset({"ok", "degraded"})
_LIVE_BOOK = frozenset({"ok", "feed_degraded"})


@dataclass(frozen=True)
class CoreParams:
    """Analytics parameters (the worker fills them from its Settings)."""

    fast_cycle_ns: int = 250 * MS
    slow_cycle_ns: int = 2_000 * MS
    depth_levels: int = 20
    count_window_ns: int = 10 * SEC
    net_window_ns: int = 30 * SEC
    stats_window_ns: int = DAY_NS
    #: Ring size of the 24 h statistics (see ``trades.StatsRing``: 60 s blocks at 24 h).
    stats_max_blocks: int = MAX_BLOCKS
    #: A jump of more boundaries than this emits only the first ones and the last.
    max_idle_cycles: int = 240
    slow: SlowParams = field(default_factory=SlowParams)

    def __post_init__(self) -> None:
        if self.slow_cycle_ns % self.fast_cycle_ns:
            raise ValueError("the slow cycle must be a multiple of the fast cycle")
        if self.stats_window_ns % self.fast_cycle_ns:
            raise ValueError("24 h must be a whole number of fast cycles")


class Cycle(NamedTuple):
    """One emitted boundary: its event time, the report (without ``writer``) and cost."""

    t_ns: int
    report: dict[str, Any]
    #: Wall-clock nanoseconds spent building this report (fast part).
    fast_ns: int
    #: Nanoseconds spent on the slow fields at this boundary (0 if not a slow boundary).
    slow_ns: int


@dataclass
class CoreCounters:
    entries: int = 0
    deltas_stale: int = 0
    deltas_without_book: int = 0
    sequence_gaps: int = 0
    #: Trades with a non-positive price or size (skipped).
    bad_trades: int = 0


class SymbolCore:
    """Book, trade windows, feed state and the cycle clock of one symbol."""

    def __init__(
        self, symbol: str, venue: str, params: CoreParams | None = None, size_unit: str = "base"
    ) -> None:
        self.symbol = symbol
        self.venue = venue
        #: ``base`` (spot, linear contracts): price x size is a quote notional. Anything
        #: else (inverse contracts) has no notional fields (depth bands, slippage, crash risk).
        self.size_unit = size_unit
        self.params = params or CoreParams()
        p = self.params
        self.book = L2Book()
        self.trades = TradeWindows(
            p.fast_cycle_ns,
            p.count_window_ns,
            p.net_window_ns,
            p.stats_window_ns,
            p.stats_max_blocks,
            FlowWindows(p.fast_cycle_ns, notional=size_unit == "base"),
        )
        self.slow = SlowState(p.slow, p.slow_cycle_ns, notional=size_unit == "base")
        self.clock = CycleClock(p.fast_cycle_ns, p.max_idle_cycles)
        #: Last ``status`` state from ingest (ok | degraded | down | resync | unbuildable).
        self.feed_state = "ok"
        self.feed_reason = ""
        #: Newest exchange event time applied (market-data entries only).
        self.last_event_ns: int | None = None
        #: Event time of the first market-data entry: trade windows are complete after it.
        self.observed_since_ns: int | None = None
        self.ticker: tuple[int, TickerPayload] | None = None
        #: Mark / index / funding, open interest, liquidations (live futures only).
        self.derivatives = DerivativesState(notional=size_unit == "base")
        self.counters = CoreCounters()
        self._slow_fields: dict[str, Any] = {}

    # --- input ---------------------------------------------------------------------

    def apply(self, entry: Entry) -> list[Cycle]:
        """Close the boundaries before ``entry`` (reports), then apply it."""
        self.counters.entries += 1
        payload = entry.payload
        if isinstance(payload, StatusPayload):
            self._apply_status(payload)
            return []
        if isinstance(payload, _DERIVATIVE_PAYLOADS):
            # Derivative entries keep their own times: they neither move the cycle clock
            # nor refresh the market data's age (a live mark stream must not close
            # boundaries ahead of the book and trades, nor hide a silent book).
            self.derivatives.add(entry.event_ns, payload)
            return []
        cycles = [self._cycle(t) for t in self.clock.due_before(entry.event_ns)]
        e = entry.event_ns
        if self.last_event_ns is None or e > self.last_event_ns:
            self.last_event_ns = e
        if self.observed_since_ns is None:
            self.observed_since_ns = e
        if isinstance(payload, DeltaPayload):
            self._apply_delta(payload, e)
        elif isinstance(payload, TradePayload):
            if payload.px <= 0 or payload.sz <= 0:
                self.counters.bad_trades += 1
                return cycles
            if self.feed_state == "down":
                self.feed_state = "ok"
            self.trades.add(
                e, payload.px, payload.sz, payload.pp, payload.sp, payload.side, payload.liq
            )
            self.slow.on_trade(e, payload, self.book)
        elif isinstance(payload, SnapPayload):
            self.book.apply_snap(payload)
            self.slow.on_snap(self.book)
            if self.feed_state in ("resync", "unbuildable", "down"):
                self.feed_state = "ok"
        elif isinstance(payload, TickerPayload):
            self.ticker = (e, payload)
        return cycles

    def advance_to(self, estimate_ns: int) -> list[Cycle]:
        """Stall watchdog: close boundaries up to the estimated exchange clock."""
        return [self._cycle(t) for t in self.clock.due_through(estimate_ns)]

    def _apply_delta(self, delta: DeltaPayload, event_ns: int) -> None:
        book = self.book
        before = book.best_bid(), book.best_ask()
        outcome = book.apply_delta(delta)
        if outcome is DeltaOutcome.STALE:
            self.counters.deltas_stale += 1
        elif outcome is DeltaOutcome.NO_BOOK:
            self.counters.deltas_without_book += 1
        elif outcome in (DeltaOutcome.GAP, DeltaOutcome.PRECISION):
            self.counters.sequence_gaps += 1
        if outcome in (DeltaOutcome.APPLIED, DeltaOutcome.GAP):
            if self.feed_state == "down":
                self.feed_state = "ok"
            self.slow.on_delta(event_ns, before, book, delta)

    def _apply_status(self, status: StatusPayload) -> None:
        self.feed_state = status.state
        self.feed_reason = status.reason
        if status.state == "resync":
            self.book.drop(BookState.RESYNC)
        elif status.state == "unbuildable":
            self.book.drop(BookState.NONE)

    # --- output --------------------------------------------------------------------

    def _cycle(self, t: int) -> Cycle:
        started = time.perf_counter_ns()
        p = self.params
        slow_ns = 0
        if t % p.slow_cycle_ns == 0:
            self._slow_fields = self.slow.compute(t, self.book, self.observed_since_ns)
            slow_ns = time.perf_counter_ns() - started
        report = self.build_report(t)
        for key, value in self._slow_fields.items():
            report.setdefault(key, value)  # slow fields never overwrite fast ones
        return Cycle(t, report, time.perf_counter_ns() - started - slow_ns, slow_ns)

    def build_report(self, t: int) -> dict[str, Any]:
        """The fast report at boundary ``t`` (everything except ``writer``)."""
        book = self.book
        trades = self.trades
        trades.advance(t)
        last_ns = self.last_event_ns
        age_ms = None if last_ns is None else max(0, (t - last_ns) // MS)
        condition = book_condition(book, self.feed_state)
        fresh = age_ms is not None and age_ms <= DEGRADED_AGE_MS
        tob = top_of_book(book)
        st = trades.stats()
        pp = trades.pp or 0
        sp = trades.sp or 0
        pscale, sscale = 10**pp, 10**sp
        change = (
            round((st.last - st.open) * 100 / st.open, 4)
            if st.last is not None and st.open
            else None
        )
        since = self.observed_since_ns if self.observed_since_ns is not None else t
        window_sec = round(min(st.span_ns, t - since) / SEC, 3)
        report: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "updatedAt": 0,
            "symbol": self.symbol,
            "venue": self.venue,
            "generated_at": iso_utc_from_ns(t),
            "data_age_ms": 0 if age_ms is None else age_ms,
            "ingestion": {
                "status": ingestion_status(condition, age_ms),
                "last_update": None if last_ns is None else iso_utc_from_ns(last_ns),
                # Data older than the degraded limit: the last word of the feed or the
                # book is no longer news, and the report must not say "ok" beside it.
                "book": condition if fresh or condition not in _LIVE_BOOK else "stale",
                "feed": self.feed_state if fresh or self.feed_state not in _LIVE else "silent",
            },
            "last_price": None if trades.last_price is None else trades.last_price / pscale,
            "change_24h_pct": change,
            "high_24h": None if st.high is None else st.high / pscale,
            "low_24h": None if st.low is None else st.low / pscale,
            "volume_24h": st.volume / sscale if trades.trades_seen else None,
            "stats_24h_window_sec": window_sec,
            "best_bid": tob.best_bid,
            "best_ask": tob.best_ask,
            "spread_bps": tob.spread_bps,
            "mid_price": tob.mid_price,
            "micro_price": tob.micro_price,
            "depth": depth_fields(book, self.params.depth_levels),
            "flow": {
                "orders_per_sec": trades.trade_count() * SEC / self.params.count_window_ns,
                "net_flow": trades.net_flow() / sscale,
                **trades.flow.flow_fields(t, since, pp, sp),
            },
            "volatility": trades.flow.volatility_fields(t, tob.mid_price, sp),
            "health": health(condition, age_ms, tob.spread_bps),
        }
        derivatives = self.derivatives.fields(t)
        if derivatives is not None:
            report["derivatives"] = derivatives
        if self.ticker is not None:
            at, tk = self.ticker
            report["venue_24h"] = {
                "last": tk.last,
                "open": tk.open,
                "high": tk.high,
                "low": tk.low,
                "volume": tk.volume,
                "change_pct": tk.change_pct,
                "as_of": iso_utc_from_ns(at),
            }
        return report


def with_writer(report: dict[str, Any], node_id: str, token: int) -> dict[str, Any]:
    """Stamp the writer block (the fencing identity) onto a core report."""
    report["writer"] = {"nodeId": node_id, "writerToken": token}
    return report


def replay(
    entries: Iterable[Entry],
    symbol: str,
    venue: str,
    params: CoreParams | None = None,
    *,
    node_id: str = "replay",
    token: int = 1,
    flush_through_ns: int | None = None,
    size_unit: str = "base",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Replay decoded wire entries (stream order) -> ``(cycle_time_ns, report)``.

    Exactly what a worker computes for the same entries at any pace. Reports carry
    ``writer = {node_id, token}``. With ``flush_through_ns``, the boundaries after the
    last entry up to that time are emitted as well (like the stall watchdog would).
    """
    core = SymbolCore(symbol, venue, params, size_unit)
    for entry in entries:
        for cycle in core.apply(entry):
            yield cycle.t_ns, with_writer(cycle.report, node_id, token)
    if flush_through_ns is not None:
        for cycle in core.advance_to(flush_through_ns):
            yield cycle.t_ns, with_writer(cycle.report, node_id, token)


def report_at(
    entries: Iterable[Entry],
    symbol: str,
    venue: str,
    t_ns: int,
    params: CoreParams | None = None,
    *,
    node_id: str = "replay",
    token: int = 1,
    size_unit: str = "base",
) -> tuple[int, dict[str, Any]] | None:
    """The report of the last boundary at or before ``t_ns`` (None if there is none).

    Entries after ``t_ns`` are not needed (iteration stops at the first one past it);
    if the entries end earlier, the clock is carried to ``t_ns`` as the stall watchdog
    would, so the report shows how stale the data is at ``t_ns``.
    """
    core = SymbolCore(symbol, venue, params, size_unit)
    found: Cycle | None = None
    for entry in entries:
        if entry.kind != "status" and entry.event_ns > t_ns:
            break
        for cycle in core.apply(entry):
            found = cycle
    for cycle in core.advance_to(t_ns):
        found = cycle
    if found is None:
        return None
    return found.t_ns, with_writer(found.report, node_id, token)
