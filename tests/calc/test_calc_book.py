"""The L2 book against the exchange's own bookTicker and a plain dict rebuild."""

from __future__ import annotations

import bisect

import pytest

from services.calc.analytics import BookState, DeltaOutcome, L2Book
from shared.wire import DeltaPayload, SnapPayload, StatusPayload
from tests.calc.calc_kit import SESSIONS, USDM_ETH, book_tickers, raw_lines, session_entries


@pytest.mark.parametrize(
    ("name", "min_compared"),
    [("usdm-btc", 600), ("usdm-eth", 800), ("spot-btc", 500), ("coinm-btc", 1000)],
)
def test_top_of_book_matches_recorded_book_ticker(name: str, min_compared: int) -> None:
    paths = SESSIONS[name]
    book = L2Book()
    applied: list[tuple[int, int, tuple[int, int] | None, tuple[int, int] | None]] = []
    for entry in session_entries(name):
        if isinstance(entry.payload, SnapPayload):
            book.apply_snap(entry.payload)
        elif isinstance(entry.payload, DeltaPayload):
            outcome = book.apply_delta(entry.payload)
            assert outcome in (DeltaOutcome.APPLIED, DeltaOutcome.STALE)
            if outcome is DeltaOutcome.APPLIED:
                applied.append((entry.payload.U, entry.payload.u, book.best_bid(), book.best_ask()))
                assert not book.is_crossed()
    assert book.state is BookState.OK
    pscale, sscale = 10**book.pp, 10**book.sp
    ends = [a[1] for a in applied]
    compared = 0
    for u, bid, bid_qty, ask, ask_qty in book_tickers(paths):
        i = bisect.bisect_right(ends, u) - 1
        # Comparable: the ticker's id lies in [u of event i, U of event i+1).
        if i < 0 or i + 1 >= len(applied) or u >= applied[i + 1][0]:
            continue
        _, _, bb, ba = applied[i]
        assert bb is not None and ba is not None
        assert (bb[0] / pscale, bb[1] / sscale, ba[0] / pscale, ba[1] / sscale) == (
            bid,
            bid_qty,
            ask,
            ask_qty,
        ), f"bookTicker u={u}"
        compared += 1
    assert compared >= min_compared


def test_every_level_matches_a_plain_dict_rebuild() -> None:
    """All levels after the whole session equal a plain float-dict rebuild."""
    book = L2Book()
    for entry in session_entries("usdm-eth"):
        if isinstance(entry.payload, SnapPayload):
            book.apply_snap(entry.payload)
        elif isinstance(entry.payload, DeltaPayload):
            book.apply_delta(entry.payload)
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    snap_u = None
    held = []
    for msg in raw_lines(USDM_ETH):
        if "lastUpdateId" in msg:
            snap_u = msg["lastUpdateId"]
            bids = {float(p): float(q) for p, q in msg["bids"]}
            asks = {float(p): float(q) for p, q in msg["asks"]}
            todo = [d for d in held if d["u"] >= snap_u]
        elif "@depth" in msg.get("stream", ""):
            todo = [msg["data"]] if snap_u is not None else []
            if snap_u is None:
                held.append(msg["data"])
        else:
            continue
        for d in todo:
            for side, key in ((bids, "b"), (asks, "a")):
                for p, q in d[key]:
                    if float(q) == 0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = float(q)
    pscale, sscale = 10**book.pp, 10**book.sp
    assert {p / pscale: q / sscale for p, q in book.bids.items()} == bids
    assert {p / pscale: q / sscale for p, q in book.asks.items()} == asks
    prices, _ = book.sorted_side(is_bid=True)
    assert list(prices[:5] / pscale) == sorted(bids, reverse=True)[:5]
    prices, _ = book.sorted_side(is_bid=False)
    assert list(prices[:5] / pscale) == sorted(asks)[:5]


def _snap(u: int) -> SnapPayload:
    return SnapPayload(u=u, pp=1, sp=3, b=[(1000, 5), (990, 1)], a=[(1010, 2), (1020, 1)])


def _delta(
    U: int, u: int, pu: int, b: list[tuple[int, int]], a: list[tuple[int, int]]
) -> DeltaPayload:
    return DeltaPayload(U=U, u=u, pu=pu, pp=1, sp=3, b=b, a=a)


def test_sequence_break_marks_gap_until_next_snapshot() -> None:
    book = L2Book()
    assert book.apply_delta(_delta(1, 2, 0, [], [])) is DeltaOutcome.NO_BOOK
    book.apply_snap(_snap(100))
    assert book.apply_delta(_delta(90, 99, 89, [(995, 1)], [])) is DeltaOutcome.STALE
    assert 995 not in book.bids
    assert book.apply_delta(_delta(95, 105, 94, [(1000, 0)], [])) is DeltaOutcome.APPLIED
    assert book.best_bid() == (990, 1)
    assert book.apply_delta(_delta(106, 110, 105, [], [(1010, 0)])) is DeltaOutcome.APPLIED
    assert book.best_ask() == (1020, 1)
    assert book.state is BookState.OK
    # pu 111 != previous u 110: a break.
    assert book.apply_delta(_delta(112, 115, 111, [(1030, 1)], [])) is DeltaOutcome.GAP
    assert book.state is BookState.GAP
    assert book.is_crossed()
    book.apply_snap(_snap(200))
    assert book.state is BookState.OK and not book.is_crossed()
    assert book.apply_delta(_delta(201, 202, 200, [], [])) is DeltaOutcome.APPLIED
    book.drop(BookState.RESYNC)
    assert not book.has_book and book.best_bid() is None
    assert book.apply_delta(_delta(203, 204, 202, [], [])) is DeltaOutcome.NO_BOOK


def test_status_payload_type_is_not_a_book_update() -> None:
    assert StatusPayload(state="resync").state == "resync"
