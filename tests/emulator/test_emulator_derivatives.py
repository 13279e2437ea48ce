"""The emulator's synthetic derivatives frames (pure core, no sockets).

There is no recording of the venues' derivatives streams: the emulator synthesises
them from the recorded frames (context8/emulator/derivatives.py). These tests check
that what it makes up is (a) in the venues' documented shapes -- ingest's own parsers
read every frame -- (b) derived as documented (mark = last trade / Bybit true mid x 1.0005,
one per exchange second; liquidations from every 20th trade / every 5th Bybit update) and
(c) the same at any pace.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from context8.emulator.book import BookKeeper
from context8.emulator.derivatives import (
    FUNDING_INTERVAL_MS,
    LIQUIDATION_EVERY,
    Synthesiser,
    binance_open_interest_body,
    open_interest,
)
from context8.emulator.recording import Event, Kind, Recording, load_symbol
from context8.emulator.timeline import Cursor
from services.ingest.feeds import Feed
from services.ingest.parsing import parser_for
from services.ingest.recorded import RawLine
from services.ingest.records import Liquidation, MarkUpdate, OpenInterest
from services.ingest.venues.binance.parsing import BinanceParser
from tests.conftest import DATA

BTC = [DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"]
BYBIT = [DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"]


def _load(market: str, symbol: str, files: list[Path]) -> Recording:
    return load_symbol(market, symbol, files)


def _synthetic(rec: Recording, venue: str, step_ms: float | None) -> list[Event]:
    """Every synthetic frame, advancing the cursor ``step_ms`` at a time (None: at once)."""
    keeper = BookKeeper(venue, True)
    synth = Synthesiser(venue, rec.symbol, True)
    cursor = Cursor(rec.events, keeper, synth.observe)
    out: list[Event] = []
    if step_ms is None:
        out = cursor.due(float("inf"))
    else:
        position = float(rec.events[0].t)
        while not cursor.ended:
            out.extend(cursor.due(position))
            position += step_ms
    return [ev for ev in out if ev.kind in (Kind.MARK, Kind.LIQUIDATION)]


def test_binance_synthesis_is_the_same_at_any_pace() -> None:
    rec = _load("binance-usdm", "BTCUSDT", BTC)
    at_once = _synthetic(rec, "binance", None)
    stepped = _synthetic(rec, "binance", 137.0)
    assert [e.text for e in at_once] == [e.text for e in stepped]
    assert sum(e.kind is Kind.MARK for e in at_once) > 100
    assert sum(e.kind is Kind.LIQUIDATION for e in at_once) > 10


def test_binance_marks_are_the_last_trade_plus_premium_once_per_second() -> None:
    rec = _load("binance-usdm", "BTCUSDT", BTC)
    keeper = BookKeeper("binance", True)
    synth = Synthesiser("binance", "BTCUSDT", True)
    parser = parser_for(Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3))
    seconds: list[int] = []
    last_trade: str | None = None
    for ev in rec.events:
        keeper.apply(ev)
        if ev.kind is Kind.TRADE:
            last_trade = json.loads(ev.text)["data"]["p"]
        for out in synth.observe(ev, keeper):
            if out.kind is not Kind.MARK:
                continue
            data = json.loads(out.text)["data"]
            assert last_trade is not None
            index = Decimal(data["i"])
            assert index == Decimal(last_trade).quantize(Decimal("1e-8"))
            assert Decimal(data["p"]) == (index * Decimal("1.0005")).quantize(Decimal("1e-8"))
            assert data["r"] == "0.00010000"
            assert data["T"] % FUNDING_INTERVAL_MS == 0
            assert 0 < data["T"] - data["E"] <= FUNDING_INTERVAL_MS
            assert data["E"] == ev.t + ev.offset
            seconds.append(data["E"] // 1000)
            record = parser.parse(RawLine(1, out.text.encode(), 1))
            assert record == MarkUpdate(
                float(data["p"]), float(data["i"]), 0.0001, data["T"], data["E"] * 1_000_000, 1
            )
    assert len(seconds) > 100 and len(set(seconds)) == len(seconds)


def test_bybit_marks_are_the_true_mid_plus_premium() -> None:
    rec = _load("bybit-linear", "XRPUSDT", BYBIT)
    keeper = BookKeeper("bybit", True)
    synth = Synthesiser("bybit", "XRPUSDT", True)
    marks = 0
    for ev in rec.events:
        keeper.apply(ev)
        for out in synth.observe(ev, keeper):
            if out.kind is Kind.MARK:
                data = json.loads(out.text)["data"]
                bid = max(Decimal(p) for p in keeper.book.bids)
                ask = min(Decimal(p) for p in keeper.book.asks)
                index = Decimal(data["indexPrice"])
                assert index == ((bid + ask) / 2).quantize(Decimal("1e-8"))
                assert Decimal(data["markPrice"]) == (index * Decimal("1.0005")).quantize(
                    Decimal("1e-8")
                )
                marks += 1
    assert marks >= 4


def test_binance_force_orders_come_from_every_20th_trade_at_most_one_per_second() -> None:
    rec = _load("binance-usdm", "BTCUSDT", BTC)
    trades: dict[int, list[dict]] = {}
    for ev in rec.events:
        if ev.kind is Kind.TRADE:
            data = json.loads(ev.text)["data"]
            trades.setdefault(data["T"], []).append(data)
    parser = parser_for(Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3))
    orders = [e for e in _synthetic(rec, "binance", None) if e.kind is Kind.LIQUIDATION]
    last = None
    for ev in orders:
        o = json.loads(ev.text)["data"]["o"]
        assert o["X"] == "FILLED" and o["ap"] == o["p"] and o["z"] == o["l"] == o["q"]
        (trade,) = [
            t
            for t in trades[o["T"]]
            if t["t"] % LIQUIDATION_EVERY == 0
            and (o["S"], o["q"], o["p"]) == ("SELL" if t["m"] else "BUY", t["q"], t["p"])
        ]
        assert last is None or o["T"] - last >= 1000
        last = o["T"]
        record = parser.parse(RawLine(1, ev.text.encode(), 1))
        assert isinstance(record, Liquidation)
        assert record.side == ("long" if trade["m"] else "short")


def test_binance_open_interest_body_parses() -> None:
    parser = parser_for(Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3))
    assert isinstance(parser, BinanceParser)
    body = binance_open_interest_body("BTCUSDT", None, 1_721_347_123_456)
    raw = json.dumps(body).encode()
    assert parser.open_interest(raw, 1) == OpenInterest(
        float(open_interest(1_721_347_123_456)), None, 1_721_347_123_456_000_000, 1
    )
    assert open_interest(0) != open_interest(1000)  # it moves with time


def test_bybit_tickers_and_liquidations() -> None:
    rec = _load("bybit-linear", "XRPUSDT", BYBIT)
    at_once = _synthetic(rec, "bybit", None)
    assert [e.text for e in at_once] == [e.text for e in _synthetic(rec, "bybit", 91.0)]
    parser = parser_for(Feed("BYBIT", "linear", "XRPUSDT", "XRPUSDT", 4, 0))
    tickers = [e for e in at_once if e.kind is Kind.MARK]
    liquidations = [e for e in at_once if e.kind is Kind.LIQUIDATION]
    assert tickers and liquidations
    for ev in tickers:
        msg = json.loads(ev.text)
        data = msg["data"]
        mark, oi = parser.parse_all(RawLine(None, ev.text.encode(), 1))
        assert isinstance(mark, MarkUpdate) and isinstance(oi, OpenInterest)
        assert data["openInterest"] == open_interest(msg["ts"])
        assert Decimal(data["openInterestValue"]) == (
            Decimal(data["openInterest"]) * Decimal(data["markPrice"])
        ).quantize(Decimal("0.01"))
        assert oi.value == float(data["openInterestValue"])
    sides = set()
    for ev in liquidations:
        (record,) = parser.parse_all(RawLine(None, ev.text.encode(), 1))
        assert isinstance(record, Liquidation)
        item = json.loads(ev.text)["data"][0]
        assert record.side == {"Buy": "long", "Sell": "short"}[item["S"]]
        sides.add(record.side)
    assert sides == {"long", "short"}
