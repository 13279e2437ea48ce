"""Derivatives frames (live futures) -> records, and their wire entries.

No recording of these streams exists: the frames below are written in the shapes the
venues document (Binance USDⓈ-M/COIN-M "Mark Price Stream", "Liquidation Order Streams",
``GET /fapi/v1/openInterest``; Bybit v5 public ``tickers`` (linear snapshot and delta)
and ``allLiquidation`` / ``liquidation``), as the venue emulator serves them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.ingest.core import FeedCore
from services.ingest.feeds import Feed
from services.ingest.parsing import ParseRejection, parser_for
from services.ingest.recorded import RawLine
from services.ingest.records import Liquidation, MarkUpdate, OpenInterest, wire_fields
from services.ingest.venues.binance.parsing import BinanceParser
from shared import wire

USDM = Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3)
COINM = Feed("BINANCE", "coinm", "BTCUSD_PERP", "BTCUSD_PERP", 1, 0)
SPOT = Feed("BINANCE", "spot", "BTCUSDT", "BTCUSDT", 2, 8)
LINEAR = Feed("BYBIT", "linear", "BTCUSDT", "BTCUSDT", 1, 3)
BYBIT_SPOT = Feed("BYBIT", "spot", "BTCUSDT", "BTCUSDT", 2, 6)
T0 = 1721347000000000000
MS = 1_000_000

MARK = {
    "stream": "btcusdt@markPrice@1s",
    "data": {
        "e": "markPriceUpdate",
        "E": 1562305380000,
        "s": "BTCUSDT",
        "p": "11794.15000000",
        "i": "11784.62659091",
        "P": "11784.25641265",
        "r": "0.00038167",
        "T": 1562306400000,
    },
}
FORCE = {
    "stream": "btcusdt@forceOrder",
    "data": {
        "e": "forceOrder",
        "E": 1568014460893,
        "o": {
            "s": "BTCUSDT",
            "S": "SELL",
            "o": "LIMIT",
            "f": "IOC",
            "q": "0.014",
            "p": "9910",
            "ap": "9910",
            "X": "FILLED",
            "l": "0.014",
            "z": "0.014",
            "T": 1568014460893,
        },
    },
}
TICKER_SNAPSHOT = {
    "topic": "tickers.BTCUSDT",
    "type": "snapshot",
    "data": {
        "symbol": "BTCUSDT",
        "tickDirection": "PlusTick",
        "price24hPcnt": "0.017103",
        "lastPrice": "17216.00",
        "markPrice": "17217.33",
        "indexPrice": "17227.36",
        "openInterest": "68744.761",
        "openInterestValue": "1183601235.91",
        "nextFundingTime": "1673280000000",
        "fundingRate": "-0.000212",
        "bid1Price": "17215.50",
        "ask1Price": "17216.00",
    },
    "cs": 24987956059,
    "ts": 1673272861686,
}
ALL_LIQ = {
    "topic": "allLiquidation.BTCUSDT",
    "type": "snapshot",
    "ts": 1739502303204,
    "data": [
        {"T": 1739502302929, "s": "BTCUSDT", "S": "Sell", "v": "0.003", "p": "96500.1"},
        {"T": 1739502303100, "s": "BTCUSDT", "S": "Buy", "v": "0.25", "p": "96480"},
    ],
}


def line(obj: Any, recv: int | None = T0) -> RawLine:
    return RawLine(recv, json.dumps(obj).encode(), 1)


def with_data(msg: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**msg, "data": {**msg["data"], **changes}}


# --- Binance -----------------------------------------------------------------------------


def test_binance_mark_price_frame() -> None:
    rec = parser_for(USDM).parse(line(MARK))
    assert rec == MarkUpdate(
        11794.15, 11784.62659091, 0.00038167, 1562306400000, 1562305380000 * MS, T0
    )


def test_binance_coinm_mark_without_funding() -> None:
    """COIN-M delivery contracts send empty funding fields: no funding, not a rejection."""
    msg = {
        "stream": "btcusd_perp@markPrice@1s",
        "data": {**MARK["data"], "s": "BTCUSD_PERP", "r": "", "T": 0},
    }
    rec = parser_for(COINM).parse(line(msg))
    assert isinstance(rec, MarkUpdate)
    assert (rec.funding, rec.nft, rec.mark) == (None, None, 11794.15)


def test_binance_force_order_sell_liquidates_a_long() -> None:
    rec = parser_for(USDM).parse(line(FORCE))
    assert rec == Liquidation("long", 9910.0, 0.014, 1568014460893 * MS, T0)
    buy = {**FORCE, "data": {**FORCE["data"], "o": {**FORCE["data"]["o"], "S": "BUY"}}}
    assert parser_for(USDM).parse(line(buy)).side == "short"  # type: ignore[union-attr]


def test_binance_force_order_prefers_average_price_and_filled_size() -> None:
    order = {**FORCE["data"]["o"], "p": "9900", "ap": "9912.5", "q": "0.020", "z": "0.014"}
    rec = parser_for(USDM).parse(line({**FORCE, "data": {**FORCE["data"], "o": order}}))
    assert isinstance(rec, Liquidation) and (rec.px, rec.sz) == (9912.5, 0.014)


def test_binance_open_interest_body() -> None:
    parser = parser_for(USDM)
    assert isinstance(parser, BinanceParser)
    body = b'{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}'
    assert parser.open_interest(body, T0) == OpenInterest(10659.509, None, 1589437530011 * MS, T0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"openInterest":"x","symbol":"BTCUSDT","time":1}', "bad_value"),
        (b'{"openInterest":"-1","symbol":"BTCUSDT","time":1}', "bad_value"),
        (b'{"symbol":"BTCUSDT","time":1}', "malformed"),
        (b'{"openInterest":"1","symbol":"ETHUSDT","time":1}', "wrong_symbol"),
        (b"<html>", "malformed"),
    ],
)
def test_binance_open_interest_bad_bodies(body: bytes, reason: str) -> None:
    parser = parser_for(USDM)
    assert isinstance(parser, BinanceParser)
    with pytest.raises(ParseRejection) as err:
        parser.open_interest(body, T0)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (with_data(MARK, p="abc"), "bad_value"),
        (with_data(MARK, p="0"), "bad_value"),
        (with_data(MARK, i="nan"), "bad_value"),
        (with_data(MARK, s="ETHUSDT"), "wrong_symbol"),
        ({"stream": "btcusdt@markPrice@1s", "data": {"e": "markPriceUpdate"}}, "malformed"),
        (
            {**FORCE, "data": {**FORCE["data"], "o": {**FORCE["data"]["o"], "S": "HOLD"}}},
            "bad_value",
        ),
        (
            {**FORCE, "data": {**FORCE["data"], "o": {**FORCE["data"]["o"], "q": "-1", "z": "0"}}},
            "bad_value",
        ),
        ({**FORCE, "data": {"e": "forceOrder", "E": 1}}, "malformed"),
    ],
)
def test_binance_malformed_derivative_frames_are_rejections(
    msg: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ParseRejection) as err:
        parser_for(USDM).parse(line(msg))
    assert err.value.reason == reason


def test_spot_has_no_derivative_streams() -> None:
    spot_mark = {**MARK, "data": {**MARK["data"]}}
    with pytest.raises(ParseRejection) as err:
        parser_for(SPOT).parse(line(spot_mark))
    assert err.value.reason == "unknown_stream"


# --- Bybit -------------------------------------------------------------------------------


def test_bybit_ticker_snapshot_gives_mark_and_open_interest() -> None:
    recs = parser_for(LINEAR).parse_all(line(TICKER_SNAPSHOT, None))
    event = 1673272861686 * MS
    assert recs == [
        MarkUpdate(17217.33, 17227.36, -0.000212, 1673280000000, event, event),
        OpenInterest(68744.761, 1183601235.91, event, event),
    ]


def test_bybit_ticker_delta_carries_only_what_changed() -> None:
    delta = {
        "topic": "tickers.BTCUSDT",
        "type": "delta",
        "data": {"symbol": "BTCUSDT", "markPrice": "17218.00", "bid1Price": "17215.50"},
        "cs": 24987956060,
        "ts": 1673272861786,
    }
    assert parser_for(LINEAR).parse_all(line(delta)) == [
        MarkUpdate(17218.0, None, None, None, 1673272861786 * MS, T0)
    ]
    quiet = {**delta, "data": {"symbol": "BTCUSDT", "bid1Price": "17215.50"}}
    assert parser_for(LINEAR).parse_all(line(quiet)) == []
    oi_only = {**delta, "data": {"symbol": "BTCUSDT", "openInterest": "68745"}}
    assert parser_for(LINEAR).parse_all(line(oi_only)) == [
        OpenInterest(68745.0, None, 1673272861786 * MS, T0)
    ]


def test_bybit_all_liquidation_side_is_the_liquidated_position() -> None:
    recs = parser_for(LINEAR).parse_all(line(ALL_LIQ))
    assert recs == [
        Liquidation("short", 96500.1, 0.003, 1739502302929 * MS, T0),  # Sell: a short
        Liquidation("long", 96480.0, 0.25, 1739502303100 * MS, T0),  # Buy: a long
    ]


def test_bybit_legacy_liquidation_topic() -> None:
    msg = {
        "topic": "liquidation.BTCUSDT",
        "type": "snapshot",
        "ts": 1703485237953,
        "data": {
            "updatedTime": 1703485237953,
            "symbol": "BTCUSDT",
            "side": "Buy",
            "size": "0.003",
            "price": "43511.70",
        },
    }
    assert parser_for(LINEAR).parse_all(line(msg)) == [
        Liquidation("long", 43511.7, 0.003, 1703485237953 * MS, T0)
    ]


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (with_data(TICKER_SNAPSHOT, markPrice="-5"), "bad_value"),
        (with_data(TICKER_SNAPSHOT, fundingRate="inf"), "bad_value"),
        (with_data(TICKER_SNAPSHOT, openInterest="-3"), "bad_value"),
        (with_data(TICKER_SNAPSHOT, nextFundingTime="soon"), "bad_value"),
        (with_data(TICKER_SNAPSHOT, symbol="ETHUSDT"), "wrong_symbol"),
        ({**TICKER_SNAPSHOT, "data": {"markPrice": "1"}}, "malformed"),
        ({**ALL_LIQ, "data": [{**ALL_LIQ["data"][0], "S": "None"}]}, "bad_value"),
        ({**ALL_LIQ, "data": [{**ALL_LIQ["data"][0], "v": "0"}]}, "bad_value"),
        ({**ALL_LIQ, "data": [{"T": 1, "s": "BTCUSDT"}]}, "malformed"),
    ],
)
def test_bybit_malformed_derivative_frames_are_rejections(msg: dict[str, Any], reason: str) -> None:
    with pytest.raises(ParseRejection) as err:
        parser_for(LINEAR).parse_all(line(msg))
    assert err.value.reason == reason


def test_bybit_spot_has_no_derivative_topics() -> None:
    with pytest.raises(ParseRejection) as err:
        parser_for(BYBIT_SPOT).parse_all(line(TICKER_SNAPSHOT))
    assert err.value.reason == "unknown_stream"


# --- records -> wire ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "kind", "payload"),
    [
        (
            MarkUpdate(11794.15, 11784.6, 0.0001, 1562306400000, 5 * MS, 6 * MS),
            "mark",
            wire.MarkPayload(11794.15, 11784.6, 0.0001, 1562306400000),
        ),
        (MarkUpdate(1.5, None, None, None, 5 * MS, 6 * MS), "mark", wire.MarkPayload(1.5)),
        (OpenInterest(10.5, 99.0, 5 * MS, 6 * MS), "oi", wire.OpenInterestPayload(10.5, 99.0)),
        (
            Liquidation("short", 96480.0, 0.25, 5 * MS, 6 * MS),
            "liq",
            wire.LiquidationPayload("short", 96480.0, 0.25),
        ),
    ],
)
def test_derivative_records_round_trip_the_wire(record: Any, kind: str, payload: Any) -> None:
    got_kind, fields = wire_fields(record, 1, 3)
    entry = wire.decode(fields)
    assert (got_kind, entry.kind, entry.payload) == (kind, kind, payload)
    assert (entry.event_ns, entry.recv_ns) == (5 * MS, 6 * MS)


def test_feed_core_writes_derivatives_without_touching_the_book() -> None:
    core = FeedCore(USDM)
    rec = Liquidation("long", 1.0, 2.0, 5 * MS, 6 * MS)
    assert core.on_derivative(rec) == [rec]
    assert (core.state, core.last_event_ns, core.sequencer.phase) == ("waiting", 0, "waiting")
    core.end("end of recording")
    assert core.on_derivative(rec) == []
