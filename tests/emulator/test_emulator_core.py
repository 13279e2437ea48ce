"""The emulator's functional core, without sockets: book, schedule, limits, faults, protocol.

The true book is also checked against the recordings themselves: every comparable
recorded bookTicker (the exchange's own top of book) must equal the top of the book the
emulator would serve at that point.
"""

from __future__ import annotations

import bisect
import itertools
import json
from pathlib import Path

import pytest

from context8.emulator.book import BookKeeper, TrueBook
from context8.emulator.copies import CopySpecError, Renamer, copy_names, parse_copies
from context8.emulator.faults import FaultError, FaultState, parse_fault
from context8.emulator.limits import (
    DepthParamError,
    MarketAccounting,
    MinuteWeight,
    SlidingWindow,
    depth_limit,
    depth_weight,
)
from context8.emulator.markets import MARKETS, venue_urls, ws_base
from context8.emulator.protocol import (
    binance_control,
    binance_depth_body,
    bybit_op,
    data_part,
    initial_streams,
    parse_stream,
    rename_stream,
)
from context8.emulator.recording import (
    Event,
    Kind,
    default_files,
    group_files,
    load_symbol,
)
from context8.emulator.timeline import Clock, Cursor
from tests.conftest import DATA

USDM = MARKETS["binance-usdm"]
SPOT = MARKETS["binance-spot"]
BTC_JULY = [DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
            DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz"]
BTC_AUG = DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"
SPOT_AUG = DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz"
BYBIT = DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"


def diff(first: int, last: int, prev: int = -1, bids=(), asks=(), t: int = 0) -> Event:
    return Event(t, 0, Kind.DEPTH, "x@depth@0ms", "", first, last, prev,
                 [list(b) for b in bids], [list(a) for a in asks])


def snap(last: int, bids=(), asks=(), t: int = 0) -> Event:
    return Event(t, 0, Kind.SNAPSHOT, "", "", last, last, -1,
                 [list(b) for b in bids], [list(a) for a in asks])


# ------------------------------------------------------------------------- book


def test_true_book_orders_levels_and_removes_zero_sizes() -> None:
    book = TrueBook()
    book.replace([["10.0", "1"], ["9.5", "2"], ["11.0", "0.000"]], [["12.0", "3"], ["11.5", "1"]])
    book.apply([["9.5", "0"], ["10.5", "4"]], [["13.0", "1"]])
    assert book.top() == (
        [["10.5", "4"], ["10.0", "1"]],
        [["11.5", "1"], ["12.0", "3"], ["13.0", "1"]],
    )
    assert book.top(1) == ([["10.5", "4"]], [["11.5", "1"]])


@pytest.mark.parametrize(("futures", "applied"), [(True, [100, 101]), (False, [101])])
def test_snapshot_applies_the_buffered_diffs_it_does_not_cover(
    futures: bool, applied: list[int]
) -> None:
    """Futures cover ``u < lastUpdateId``; spot ``u <= lastUpdateId``."""
    keeper = BookKeeper("binance", futures)
    keeper.apply(diff(90, 99, 89, bids=[("1", "9")]))  # covered by both rules
    keeper.apply(diff(95, 100, 99, bids=[("2", "1")]))  # u == L: covered on spot only
    keeper.apply(diff(101, 101, 100, bids=[("3", "1")]))
    assert not keeper.known
    keeper.apply(snap(100, bids=[("1", "1")], asks=[("5", "1")]))
    assert keeper.known and keeper.last_update_id == 101
    prices = [p for p, _ in keeper.book.top()[0]]
    assert prices == (["3", "2", "1"] if 100 in applied else ["3", "1"])
    assert keeper.book.bids["1"] == "1"  # the covered diff was not applied


def test_a_chain_break_makes_the_book_unknown_until_the_next_snapshot() -> None:
    keeper = BookKeeper("binance", True)
    keeper.apply(snap(10, bids=[("1", "1")]))
    keeper.apply(diff(11, 12, 10, bids=[("2", "1")]))
    assert keeper.last_update_id == 12
    keeper.apply(diff(50, 60, 49, bids=[("3", "1")]))  # a new session's diff
    assert not keeper.known and keeper.chain_breaks == 1
    keeper.apply(snap(55, bids=[("7", "1")]))
    assert keeper.known and keeper.last_update_id == 60
    assert keeper.book.top()[0] == [["7", "1"], ["3", "1"]]


def test_bybit_snapshot_replaces_and_deltas_update() -> None:
    keeper = BookKeeper("bybit", False)
    keeper.apply(Event(0, 0, Kind.DEPTH, "orderbook.500.X", "", 1, 1, -1, [["1", "1"]], []))
    assert not keeper.known  # a delta before any snapshot is meaningless
    keeper.apply(Event(0, 0, Kind.SNAPSHOT, "orderbook.500.X", "", 5, 5, -1,
                       [["1", "1"]], [["2", "1"]], 77, 123))
    keeper.apply(Event(0, 0, Kind.DEPTH, "orderbook.500.X", "", 6, 6, -1,
                       [["1", "0"]], [["2", "3"]], 78, 124))
    assert (keeper.last_update_id, keeper.seq, keeper.cts) == (6, 78, 124)
    assert keeper.book.top() == ([], [["2", "3"]])


# --------------------------------------------------------------------- schedule


def test_clock_maps_wall_time_to_exchange_time_at_speed() -> None:
    clock = Clock(origin_ms=1_000_000, speed=20)
    assert clock.position(5.0) is None
    assert clock.start(100.0) and not clock.start(200.0)
    assert clock.position(100.5) == pytest.approx(1_000_000 + 10_000)
    assert clock.wall_at(1_002_000) == pytest.approx(100.1)
    with pytest.raises(ValueError):
        Clock(0, 0)


def test_cursor_passes_frames_in_order_and_knows_snapshots_ahead() -> None:
    events = [diff(1, 1, t=0), snap(1, bids=[("1", "1")], t=5), diff(2, 2, 1, t=5),
              diff(3, 3, 2, t=9)]
    cursor = Cursor(events, BookKeeper("binance", True))
    assert cursor.snapshot_ahead() and cursor.next_time() == 0
    assert [e.last_id for e in cursor.due(4.9)] == [1]
    assert [e.kind for e in cursor.due(5)] == [Kind.SNAPSHOT, Kind.DEPTH]
    assert not cursor.snapshot_ahead() and cursor.keeper.last_update_id == 2
    assert cursor.due(8) == [] and cursor.next_time() == 9
    cursor.due(100)
    assert cursor.ended and cursor.next_time() is None
    assert cursor.exchange_ms(250.0) == 250


def test_sessions_of_one_symbol_are_joined_and_the_gap_cut() -> None:
    rec = load_symbol("binance-usdm", "BTCUSDT", [*BTC_JULY, BTC_AUG])
    assert rec.sessions == 2 and (rec.price_precision, rec.size_precision) == (1, 3)
    times = [e.t for e in rec.events]
    assert times == sorted(times)
    assert max(b - a for a, b in itertools.pairwise(times)) < 10_000
    assert rec.data_kinds == {Kind.DEPTH, Kind.TRADE}
    # exchange time is kept: the August frames keep their own E
    last = rec.events[-1]
    assert json.loads(last.text)["data"]["E"] == last.t + last.offset
    keeper = BookKeeper("binance", True)
    for ev in rec.events:
        keeper.apply(ev)
    assert keeper.snapshots == 2 and keeper.chain_breaks == 1 and keeper.known


def test_default_files_skip_the_file_without_snapshot() -> None:
    files = default_files()
    assert files and all(f.name != "btcusdt_20230405.dat.gz" for f in files)
    assert ("bybit-linear", "XRPUSDT") in group_files(files)


@pytest.mark.parametrize(
    ("files", "market", "futures", "expected"),
    [(BTC_JULY, "binance-usdm", True, 625), ([SPOT_AUG], "binance-spot", False, 564)],
    ids=["usdm-btc-july", "spot-btc-aug"],
)
def test_true_book_top_equals_every_comparable_recorded_book_ticker(
    files: list[Path], market: str, futures: bool, expected: int
) -> None:
    """A bookTicker with id in [u of the last diff, U of the next) shows that book."""
    rec = load_symbol(market, "BTCUSDT", files)
    # Pass 1: the applied diffs' (U, u) and every ticker; which book each ticker shows.
    keeper = BookKeeper("binance", futures)
    applied: list[tuple[int, int]] = []
    tickers = []
    for ev in rec.events:
        if ev.kind is Kind.TICKER:
            tickers.append(json.loads(ev.text)["data"])
            continue
        before = keeper.last_update_id
        keeper.apply(ev)
        if ev.kind is Kind.DEPTH and keeper.known and keeper.last_update_id != before:
            applied.append((ev.first_id, ev.last_id))
    ids = [u for _, u in applied]
    wanted: dict[int, list[dict[str, str]]] = {}
    for tk in tickers:
        i = bisect.bisect_right(ids, tk["u"]) - 1
        if i >= 0 and i + 1 < len(applied) and tk["u"] < applied[i + 1][0]:
            wanted.setdefault(i, []).append(tk)
    # Pass 2: the true book's top after each of those diffs.
    keeper = BookKeeper("binance", futures)
    index = -1
    compared = 0
    for ev in rec.events:
        before = keeper.last_update_id
        keeper.apply(ev)
        if ev.kind is Kind.DEPTH and keeper.known and keeper.last_update_id != before:
            index += 1
            for tk in wanted.get(index, []):
                (bp, bq), (ap, aq) = keeper.book.top(1)[0][0], keeper.book.top(1)[1][0]
                got = tuple(float(x) for x in (bp, bq, ap, aq))
                assert got == tuple(float(tk[k]) for k in ("b", "B", "a", "A")), tk["u"]
                compared += 1
    assert compared == expected


# ----------------------------------------------------------------------- limits


def test_depth_limits_and_weights_follow_binance() -> None:
    assert depth_limit(USDM, None) == 500 and depth_limit(SPOT, None) == 100
    futures = [depth_weight(USDM, n) for n in (5, 10, 20, 50, 100, 500, 1000)]
    assert futures == [2, 2, 2, 2, 5, 10, 20]
    assert [depth_weight(SPOT, n) for n in (1, 100, 101, 500, 501, 1000, 1001, 5000)] == [
        5, 5, 25, 25, 50, 50, 250, 250]
    assert depth_limit(SPOT, "7000") == 5000
    with pytest.raises(DepthParamError) as bad:
        depth_limit(USDM, "7")
    assert bad.value.code == -1130
    with pytest.raises(DepthParamError) as bad:
        depth_limit(SPOT, "x")
    assert bad.value.code == -1100


def test_market_accounting_counts_violations_and_maxima() -> None:
    acct = MarketAccounting(USDM.limits)
    rate = SlidingWindow(1.0)
    assert all(acct.message(rate, 10.0 + i * 0.01) for i in range(10))
    assert not acct.message(rate, 10.2)  # the 11th within one second
    assert acct.message(SlidingWindow(1.0), 20.0)
    assert acct.max_messages_per_second == 11 and acct.violations["messages_per_second"] == 1
    assert acct.streams(150, 50) and not acct.streams(150, 51)
    assert acct.max_streams_per_connection == 200
    assert all(acct.connection_attempt("1.2.3.4", i * 0.1) for i in range(300))
    assert not acct.connection_attempt("1.2.3.4", 31.0)
    assert acct.connection_attempt("1.2.3.4", 400.0)  # the window has passed
    assert acct.weight("ip", 120.0, 2400) == (True, 2400)
    assert acct.weight("ip", 179.9, 1) == (False, 2401)
    assert acct.weight("ip", 180.0, 20) == (True, 20)  # a new minute
    assert acct.max_weight_per_minute == 2401
    assert MinuteWeight.retry_after(179.5) == 1 and MinuteWeight.retry_after(120.2) == 60
    bybit = MarketAccounting(MARKETS["bybit-spot"].limits)
    assert bybit.subscribe_args(11, 100) == "args size >10"
    assert bybit.violations["args_per_request"] == 1


# ----------------------------------------------------------------------- faults


def test_fault_requests_are_validated() -> None:
    for body, text in [
        ({"fault": "boom", "market": "binance-usdm"}, "'fault'"),
        ({"fault": "stall", "market": "nowhere"}, "'market'"),
        ({"fault": "drop", "market": "binance-usdm", "count": 2}, "needs 'symbol'"),
        ({"fault": "http_error", "market": "binance-usdm", "status": 500, "count": 1},
         "429 or 418"),
        ({"fault": "http_error", "market": "binance-usdm"}, "'count' or 'seconds'"),
        ({"fault": "slow_snapshot", "market": "binance-usdm"}, "'delay'"),
        ({"fault": "stall", "market": "binance-usdm", "extra": 1}, "unknown fields"),
        ({"fault": "drop", "market": "binance-usdm", "symbol": "X", "count": 0}, ">= 1"),
    ]:
        with pytest.raises(FaultError, match=text):
            parse_fault(body)


def test_fault_state_switches() -> None:
    state = FaultState()
    state.apply(parse_fault({"fault": "stall", "market": "binance-usdm"}), 0.0)
    assert state.is_stalled("binance-usdm", "ANY") and not state.is_stalled("binance-spot", "ANY")
    state.apply(parse_fault({"fault": "resume", "market": "binance-usdm"}), 0.0)
    assert not state.is_stalled("binance-usdm", "ANY")
    state.apply(parse_fault({"fault": "drop", "market": "binance-usdm", "symbol": "btcusdt",
                             "count": 2}), 0.0)
    assert [state.take_drop("binance-usdm", "BTCUSDT") for _ in range(3)] == [True, True, False]
    state.apply(parse_fault({"fault": "http_error", "market": "binance-usdm", "status": 418,
                             "seconds": 5, "retry_after": 7}), 100.0)
    fault = state.take_http_error("binance-usdm", 101.0)
    assert fault is not None and (fault.status, fault.retry_after) == (418, 7)
    assert state.take_http_error("binance-usdm", 105.0) is None
    state.apply(parse_fault({"fault": "http_error", "market": "binance-usdm", "count": 1}), 0.0)
    assert state.take_http_error("binance-usdm", 0.0) is not None
    assert state.take_http_error("binance-usdm", 0.0) is None
    state.apply(parse_fault({"fault": "slow_snapshot", "market": "binance-usdm",
                             "delay": 1.5}), 0.0)
    assert state.snapshot_delay("binance-usdm", "BTCUSDT", 1.0) == 1.5
    state.apply(parse_fault({"fault": "refuse", "market": "bybit-linear", "count": 1}), 0.0)
    assert state.take_refuse("bybit-linear", 0.0) and not state.take_refuse("bybit-linear", 0.0)
    state.apply(parse_fault({"fault": "stall", "market": "binance-spot", "symbol": "x"}), 0.0)
    state.clear()
    assert state.describe(0.0) == {"stalled": [], "drops": {}, "http_errors": {},
                                   "slow_snapshot": {}, "refusing": {}}


# --------------------------------------------------------------------- protocol


def test_binance_control_messages() -> None:
    out = binance_control('{"method":"SUBSCRIBE","params":["a@trade","b@trade"],"id":0}',
                          ["a@trade"], True)
    assert out.reply == {"result": None, "id": 0} and out.subscribe == ["b@trade"]
    assert out.adding == 1
    out = binance_control('{"method":"UNSUBSCRIBE","params":["a@trade","z"],"id":"x1"}',
                          ["a@trade"], True)
    assert out.unsubscribe == ["a@trade"] and out.reply["id"] == "x1"
    out = binance_control('{"method":"LIST_SUBSCRIPTIONS","id":3}', ["a@trade"], True)
    assert out.reply == {"result": ["a@trade"], "id": 3}
    out = binance_control('{"method":"SET_PROPERTY","params":["combined",false],"id":5}', [], True)
    assert out.combined is False
    assert binance_control('{"method":"GET_PROPERTY","params":["combined"],"id":2}', [],
                           True).reply == {"result": True, "id": 2}
    codes = {
        "{nope": 3,
        '{"method":"SET_PROPERTY","params":["other",true],"id":1}': 0,
        '{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}': 1,
        '{"method":"SUBSCRIBE","params":["a@trade"],"id":-1.5}': 2,
        '{"method":"SUBSCRIBED","params":[],"id":1}': 2,
        '{"params":[],"id":1}': 2,
    }
    for text, code in codes.items():
        reply = binance_control(text, [], True).reply
        assert reply["error"]["code"] == code, text


def test_depth_bodies_per_market() -> None:
    levels: list[list[str]] = [["1.0", "2"]]
    common = {"exchange_ms": 7, "symbol": "BTCUSD_PERP", "pair": "BTCUSD"}
    assert list(binance_depth_body("usdm", 5, levels, levels, **common)) == [  # type: ignore[arg-type]
        "lastUpdateId", "E", "T", "bids", "asks"]
    coinm = binance_depth_body("coinm", 5, levels, levels, **common)  # type: ignore[arg-type]
    assert list(coinm) == ["lastUpdateId", "E", "T", "symbol", "pair", "bids", "asks"]
    assert (coinm["symbol"], coinm["pair"], coinm["E"]) == ("BTCUSD_PERP", "BTCUSD", 7)
    assert list(binance_depth_body("spot", 5, levels, levels, **common)) == [  # type: ignore[arg-type]
        "lastUpdateId", "bids", "asks"]


def test_binance_stream_names() -> None:
    assert parse_stream("btcusdt@depth@0ms", futures=True).kind is Kind.DEPTH  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth@100ms", futures=False).kind is Kind.DEPTH  # type: ignore[union-attr]
    assert parse_stream("btcusdt@depth@0ms", futures=False) is None
    assert parse_stream("btcusdt@aggTrade", futures=True) is None
    assert initial_streams(None, "a@trade/b@trade/a@trade") == ["a@trade", "b@trade"]
    assert initial_streams("x@trade", None) == ["x@trade"]
    text = '{"stream":"a@depth@0ms","data":{"e":"depthUpdate","u":1}}'
    assert data_part(text) == '{"e":"depthUpdate","u":1}'
    assert rename_stream(text, "a@depth@0ms", "a@depth").startswith('{"stream":"a@depth",')


def test_bybit_ops() -> None:
    kw = {"conn_id": "c1", "topics": [], "symbols": {"XRPUSDT"}, "depths": (1, 50, 200, 500)}
    out = bybit_op('{"op":"subscribe","args":["orderbook.500.XRPUSDT"],"req_id":"r1"}',
                   category="linear", **kw)  # type: ignore[arg-type]
    assert out.reply == {"success": True, "ret_msg": "", "conn_id": "c1", "req_id": "r1",
                         "op": "subscribe"}
    assert [t.depth for t in out.subscribe] == [500]
    out = bybit_op('{"op":"subscribe","args":["orderbook.50.XRPUSDT"]}', category="spot",
                   **kw)  # type: ignore[arg-type]
    assert out.reply["ret_msg"] == "subscribe" and out.reply["req_id"] == ""
    out = bybit_op('{"op":"ping","req_id":"p"}', category="linear", **kw)  # type: ignore[arg-type]
    assert out.reply == {"success": True, "ret_msg": "pong", "conn_id": "c1", "req_id": "p",
                         "op": "ping"}
    out = bybit_op('{"op":"subscribe","args":["orderbook.7.XRPUSDT","publicTrade.NOPE"]}',
                   category="linear", **kw)  # type: ignore[arg-type]
    assert not out.reply["success"] and not out.subscribe
    acct = MarketAccounting(MARKETS["bybit-spot"].limits)
    args = json.dumps([f"publicTrade.S{i}" for i in range(11)])
    out = bybit_op(f'{{"op":"subscribe","args":{args}}}', category="spot",
                   args_violation=acct.subscribe_args, **kw)  # type: ignore[arg-type]
    assert out.reply["ret_msg"] == "args size >10" and out.violation


# ------------------------------------------------------------------ copies, URLs


def test_copies_rename_symbols_streams_and_pairs() -> None:
    assert copy_names("BTCUSDT", 3) == ["BTC001USDT", "BTC002USDT", "BTC003USDT"]
    assert copy_names("BTCUSD_PERP", 1) == ["BTC001USD_PERP"]
    assert len(copy_names("XRPUSDT", 1200)[-1]) == len("XRP1200USDT")
    assert parse_copies(["binance-usdm:btcusdt=2,bybit-linear:XRPUSDT=1"]) == {
        ("binance-usdm", "BTCUSDT"): 2, ("bybit-linear", "XRPUSDT"): 1}
    with pytest.raises(CopySpecError):
        parse_copies(["binance-usdm:BTCUSDT"])
    coinm = ('{"stream":"btcusd_perp@depth@0ms","data":{"e":"depthUpdate","s":"BTCUSD_PERP",'
             '"ps":"BTCUSD","U":1}}')
    renamed = json.loads(Renamer("BTCUSD_PERP", "BTC001USD_PERP").text(coinm))
    assert renamed["stream"] == "btc001usd_perp@depth@0ms"
    assert (renamed["data"]["s"], renamed["data"]["ps"]) == ("BTC001USD_PERP", "BTC001USD")
    bybit = '{"topic":"orderbook.500.XRPUSDT","type":"delta","data":{"s":"XRPUSDT","u":2}}'
    renamed = json.loads(Renamer("XRPUSDT", "XRP001USDT").text(bybit))
    assert (renamed["topic"], renamed["data"]["s"]) == ("orderbook.500.XRP001USDT", "XRP001USDT")


def test_venue_urls_render_the_ingest_setting() -> None:
    assert venue_urls("127.0.0.1", 5000, ["binance-usdm", "bybit-linear"]) == (
        "binance-usdm=http://127.0.0.1:5000/binance-usdm|ws://127.0.0.1:5000/binance-usdm,"
        "bybit-linear=http://127.0.0.1:5000/bybit-linear|"
        "ws://127.0.0.1:5000/bybit-linear/v5/public/linear"
    )
    assert ws_base("h", 1, "bybit-spot") == "ws://h:1/bybit-spot/v5/public/spot"
