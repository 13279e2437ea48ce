"""One asset across markets: its members' books joined at event-time boundaries (pure).

``AssetCore`` takes each member's stream entries (``apply(symbol, entry)``, any
interleaving of the members) and emits the asset report of every fast-cycle boundary
``t`` once every member it waits for has passed ``t`` (``advance``): a watermark.
Each member keeps the state after each of its entries (``_Track.history``), so the
report at ``t`` uses exactly every member's entries ``<= t``, whatever order the
members' entries were read in: live, a 1x replay and a full-speed replay give the same
reports. Definitions, the watermark and the stall rule: docs/analytics.md, "Asset
report".
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from services.calc.analytics.book import BookState, DeltaOutcome, L2Book, Level
from services.calc.analytics.scheduler import CycleClock
from shared.assets import Member
from shared.report import SCHEMA_VERSION, iso_utc_from_ns
from shared.wire import DeltaPayload, Entry, SnapPayload, StatusPayload, TradePayload

MS = 1_000_000
#: Feed states after which a member is not waited for (no data is coming).
NOT_LIVE = frozenset({"down", "unbuildable"})


@dataclass(frozen=True, slots=True)
class MemberState:
    """A member after one of its entries: what a boundary at or after it sees."""

    #: Newest exchange event time applied (market data only; ``status`` keeps it).
    event_ns: int
    bid: Level | None
    ask: Level | None
    pp: int
    sp: int
    book: str
    feed: str


@dataclass
class _Track:
    member: Member
    book: L2Book = field(default_factory=L2Book)
    feed: str = "ok"
    #: Newest exchange event time applied; None before the first market-data entry.
    head_ns: int | None = None
    #: (event time, state) after each entry, event times non-decreasing; pruned to the
    #: last one at or before the next boundary to emit.
    history: list[tuple[int, MemberState]] = field(default_factory=list)
    entries: int = 0

    def at(self, t: int) -> MemberState | None:
        """The state after every entry with event time ``<= t``."""
        i = bisect.bisect_right(self.history, t, key=lambda r: r[0])
        return self.history[i - 1][1] if i else None

    def prune(self, t: int) -> None:
        """Forget states no boundary ``>= t`` can see."""
        i = bisect.bisect_right(self.history, t, key=lambda r: r[0])
        if i > 1:
            del self.history[: i - 1]


@dataclass(frozen=True)
class AssetParams:
    fast_cycle_ns: int = 250 * MS
    #: A silent member (the shell's wall-time judgement) is stalled, and no longer waited
    #: for, only while the most advanced member is more than this ahead of it.
    max_skew_ns: int = 2000 * MS
    #: Boundaries released at most in one go (as ``CycleClock``).
    max_idle_cycles: int = 240


class AssetCore:
    """The members' books and the watermark of one asset."""

    def __init__(self, asset: str, members: Iterable[Member], params: AssetParams) -> None:
        self.asset = asset
        self.params = params
        self.tracks = {m.symbol: _Track(m) for m in sorted(members, key=lambda m: m.symbol)}
        self.clock = CycleClock(params.fast_cycle_ns, params.max_idle_cycles)
        #: Members reported stalled in the last report (excluded from its watermark).
        self.stalled: frozenset[str] = frozenset()
        self.bad_entries = 0

    # --- input ---------------------------------------------------------------------

    def apply(self, symbol: str, entry: Entry) -> None:
        """Apply one entry of member ``symbol`` (entries of one member in stream order)."""
        tr = self.tracks[symbol]
        tr.entries += 1
        payload = entry.payload
        book = tr.book
        if isinstance(payload, StatusPayload):
            tr.feed = payload.state
            if payload.state == "resync":
                book.drop(BookState.RESYNC)
            elif payload.state == "unbuildable":
                book.drop(BookState.NONE)
            if tr.head_ns is None:
                return  # no exchange time yet: seen from the first market-data entry on
        else:
            e = entry.event_ns
            if tr.head_ns is None or e > tr.head_ns:
                tr.head_ns = e
            if isinstance(payload, SnapPayload):
                book.apply_snap(payload)
                if tr.feed in ("resync", "unbuildable", "down"):
                    tr.feed = "ok"
            elif isinstance(payload, DeltaPayload):
                outcome = book.apply_delta(payload)
                if outcome in (DeltaOutcome.APPLIED, DeltaOutcome.GAP) and tr.feed == "down":
                    tr.feed = "ok"
            elif (
                isinstance(payload, TradePayload)
                and tr.feed == "down"
                and payload.px > 0
                and payload.sz > 0
            ):
                tr.feed = "ok"
        head = tr.head_ns
        assert head is not None
        state = MemberState(
            head, book.best_bid(), book.best_ask(), book.pp, book.sp, book.state.value, tr.feed
        )
        hist = tr.history
        if hist and hist[-1][0] == head:
            hist[-1] = (head, state)
        else:
            hist.append((head, state))

    # --- the watermark -------------------------------------------------------------

    def waited(self, silent: Collection[str] = ()) -> tuple[list[_Track], frozenset[str]]:
        """(members the watermark waits for, members stalled now).

        Not waited for: a member whose feed is ``down``/``unbuildable`` (no data is
        coming), and a stalled one: silent (``silent``, the shell's wall-time judgement)
        *and* behind the most advanced member by more than ``max_skew_ns`` of event
        time (or without any data while another has some).
        """
        heads = [tr.head_ns for tr in self.tracks.values() if tr.head_ns is not None]
        top = max(heads) if heads else None
        waited: list[_Track] = []
        stalled: set[str] = set()
        for symbol, tr in self.tracks.items():
            if tr.feed in NOT_LIVE:
                continue
            behind = tr.head_ns is None or (top or 0) - tr.head_ns > self.params.max_skew_ns
            if symbol in silent and top is not None and behind:
                stalled.add(symbol)
                continue
            waited.append(tr)
        return waited, frozenset(stalled)

    def advance(self, silent: Collection[str] = ()) -> list[tuple[int, dict[str, Any]]]:
        """The reports (boundary ns, report) every waited-for member has passed."""
        waited, stalled = self.waited(silent)
        if any(tr.head_ns is None for tr in waited):
            return []
        heads = [tr.head_ns for tr in self.tracks.values() if tr.head_ns is not None]
        if not heads:
            return []
        # Every member down or stalled: all that will come is known, up to the newest.
        watermark = (
            min(tr.head_ns for tr in waited if tr.head_ns is not None) if waited else max(heads)
        )
        clock = self.clock
        if clock.next_ns is None:
            # The first boundary is at or after every member's first entry: a worker
            # reads each member from its own checkpoint, so before the latest of them
            # some member's state is unknown (not absent).
            clock.due_before(max(tr.history[0][0] for tr in self.tracks.values() if tr.history))
        due = clock.due_before(watermark)
        self.stalled = stalled
        out = [(t, self.report(t, stalled)) for t in due]
        if clock.next_ns is not None:
            for tr in self.tracks.values():
                tr.prune(clock.next_ns)
        return out

    def watermark_lag_ns(self) -> int | None:
        """Event time from the last released boundary to the most advanced member."""
        heads = [tr.head_ns for tr in self.tracks.values() if tr.head_ns is not None]
        if self.clock.next_ns is None or not heads:
            return None
        return max(0, max(heads) - (self.clock.next_ns - self.params.fast_cycle_ns))

    # --- output --------------------------------------------------------------------

    def report(self, t: int, stalled: Collection[str] = ()) -> dict[str, Any]:
        """The asset report at boundary ``t`` from every member's state at ``t``."""
        markets: list[dict[str, Any]] = []
        usable: list[tuple[Member, MemberState]] = []
        for symbol, tr in self.tracks.items():
            s = tr.at(t)
            m = tr.member
            status = member_status(s, symbol in stalled)
            market: dict[str, Any] = {
                "symbol": symbol,
                "venue": m.venue,
                "market": m.market,
                "kind": m.kind,
                "quote": m.quote,
                "status": status,
                "best_bid": None,
                "best_ask": None,
                "mid": None,
                "basis_bps": None,
                "data_age_ms": None if s is None else (t - s.event_ns) // MS,
            }
            if s is not None and status in ("ok", "stalled"):
                bid, ask = s.bid, s.ask
                market["best_bid"] = level(m, s, bid) if bid else None
                market["best_ask"] = level(m, s, ask) if ask else None
                if bid and ask:
                    market["mid"] = float(mid(s))
                if status == "ok" and m.usd_like:
                    usable.append((m, s))
            markets.append(market)
        spot = next((ms for ms in usable if ms[0].kind == "spot" and ms[1].bid and ms[1].ask), None)
        if spot is not None:
            spot_mid = mid(spot[1])
            for market, (m, s) in _matching(markets, usable):
                if m.kind == "perp" and s.bid and s.ask:
                    market["basis_bps"] = round(float((mid(s) - spot_mid) / spot_mid * 10_000), 4)
        crossed = crosses(usable)
        ages = [m["data_age_ms"] for m in markets if m["status"] == "ok"]
        report: dict[str, Any] = {
            "schemaVersion": SCHEMA_VERSION,
            "updatedAt": 0,
            "asset": self.asset,
            "generated_at": iso_utc_from_ns(t),
            "status": asset_status([m["status"] for m in markets], len(usable)),
            "data_age_ms": max(ages) if ages else None,
            "markets": markets,
            "consolidated": consolidated(usable),
            "basis_reference": spot[0].symbol if spot else None,
            "crossed": bool(crossed),
            "crosses": crossed,
            "stalled": sorted(stalled),
        }
        return report


def member_status(s: MemberState | None, stalled: bool) -> str:
    """``no_data`` | ``stalled`` | ``down`` | ``unbuildable`` | ``resync`` | ``gap`` |
    ``no_book`` | ``crossed`` | ``ok`` (see docs/analytics.md)."""
    if s is None:
        return "no_data"
    if stalled:
        return "stalled"
    if s.feed in ("down", "unbuildable", "resync"):
        return s.feed
    if s.book == BookState.GAP.value:
        return "gap"
    if s.book != BookState.OK.value:
        return "no_book"
    if s.bid and s.ask and s.bid[0] > s.ask[0]:
        return "crossed"
    return "ok"


def asset_status(statuses: list[str], usable: int) -> str:
    """``ok``: every market ok; ``partial``: some; ``down``: none usable."""
    if usable == 0:
        return "down"
    return "ok" if all(st == "ok" for st in statuses) else "partial"


def price(s: MemberState, lv: Level) -> Fraction:
    return Fraction(lv[0], 10**s.pp)


def base_qty(m: Member, s: MemberState, lv: Level) -> Fraction:
    """A level's size in base units (COIN-M: contracts x USD per contract / price)."""
    size = Fraction(lv[1], 10**s.sp)
    if m.contract_usd:
        return size * m.contract_usd / price(s, lv)
    return size


def level(m: Member, s: MemberState, lv: Level) -> dict[str, float]:
    return {"price": float(price(s, lv)), "qty": round(float(base_qty(m, s, lv)), 8)}


def mid(s: MemberState) -> Fraction:
    assert s.bid is not None and s.ask is not None
    return Fraction(s.bid[0] + s.ask[0], 2 * 10**s.pp)


def _matching(
    markets: list[dict[str, Any]], usable: list[tuple[Member, MemberState]]
) -> list[tuple[dict[str, Any], tuple[Member, MemberState]]]:
    by_symbol = {m["symbol"]: m for m in markets}
    return [(by_symbol[ms[0].symbol], ms) for ms in usable]


def _best(usable: list[tuple[Member, MemberState]], bids: bool) -> dict[str, Any] | None:
    quotes = [
        (price(s, lv), base_qty(m, s, lv), m.symbol)
        for m, s in usable
        if (lv := (s.bid if bids else s.ask)) is not None
    ]
    if not quotes:
        return None
    best = max(q[0] for q in quotes) if bids else min(q[0] for q in quotes)
    at = [q for q in quotes if q[0] == best]
    return {
        "price": float(best),
        "qty": round(float(sum(q[1] for q in at)), 8),
        "symbols": sorted(q[2] for q in at),
    }


def consolidated(usable: list[tuple[Member, MemberState]]) -> dict[str, Any]:
    """Best bid / best ask over the usable USD-like markets (quotes at par)."""
    bid, ask = _best(usable, True), _best(usable, False)
    return {
        "quotes": sorted({m.quote for m, _ in usable}),
        "best_bid": bid,
        "best_ask": ask,
    }


def crosses(usable: list[tuple[Member, MemberState]]) -> list[dict[str, Any]]:
    """Every pair of usable USD-like markets where one's bid is above the other's ask."""
    out = []
    for mb, sb in usable:
        for ma, sa in usable:
            if mb.symbol == ma.symbol or sb.bid is None or sa.ask is None:
                continue
            b, a = price(sb, sb.bid), price(sa, sa.ask)
            if b > a:
                out.append(
                    {
                        "bid_symbol": mb.symbol,
                        "bid": float(b),
                        "ask_symbol": ma.symbol,
                        "ask": float(a),
                        "qty": round(
                            float(min(base_qty(mb, sb, sb.bid), base_qty(ma, sa, sa.ask))), 8
                        ),
                        "bps": round(float((b - a) / a * 10_000), 4),
                    }
                )
    return out
