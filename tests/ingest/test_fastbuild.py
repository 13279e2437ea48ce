"""The raw-constructor fast path builds the same Nautilus objects as Nautilus's adapters."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from ingest_support import BYBIT, DATA
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceDepth,
    BinanceOrderBookMsg,
)
from nautilus_trader.adapters.binance.futures.schemas.market import BinanceFuturesTradeMsg
from nautilus_trader.adapters.bybit.schemas.ws import BybitWsOrderbookDepthMsg
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest.fastbuild import RAW_FACTOR, LevelScaler, ValueRejection, scaled
from services.ingest.feeds import replay_feeds
from services.ingest.parsing import BookMsg, LineParser, TradeMsg
from services.ingest.recorded import RecordedFile

COINM = DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz"


def _levels(deltas: object) -> list[tuple[object, object, int, int]]:
    return [
        (d.action, d.order.side, d.order.price.raw, d.order.size.raw)
        for d in deltas.deltas  # type: ignore[attr-defined]
    ]


def test_binance_deltas_and_trades_equal_nautilus_adapter_output() -> None:
    feed = replay_feeds([COINM])[0]
    parser = LineParser(feed)
    books = trades = 0
    for line in itertools.islice(RecordedFile(COINM).lines(), 6000):
        msg = parser.parse_all(line)[0]
        assert line.recv_ns is not None
        if isinstance(msg, BookMsg) and msg.snapshot:
            theirs = msgspec.json.decode(line.raw, type=BinanceDepth).parse_to_order_book_snapshot(
                parser.instrument_id, line.recv_ns
            )
            assert _levels(msg.deltas) == _levels(theirs)  # CLEAR, then every level
            books += 1
        elif isinstance(msg, BookMsg) and msg.deltas is not None:
            data = msgspec.json.decode(line.raw, type=BinanceOrderBookMsg).data
            theirs = data.parse_to_order_book_deltas(parser.instrument_id, line.recv_ns)
            assert _levels(msg.deltas) == _levels(theirs)
            ours_meta = [(d.flags, d.sequence, d.ts_init) for d in msg.deltas.deltas]
            assert ours_meta == [(d.flags, d.sequence, d.ts_init) for d in theirs.deltas]
            assert all(d.ts_event == msg.event_ns for d in msg.deltas.deltas)
            books += 1
        elif isinstance(msg, TradeMsg):
            fut = msgspec.json.decode(line.raw, type=BinanceFuturesTradeMsg).data
            theirs = fut.parse_to_trade_tick(parser.instrument_id, line.recv_ns)
            tick = msg.tick
            assert (tick.price.raw, tick.size.raw, tick.aggressor_side, tick.trade_id) == (
                theirs.price.raw,
                theirs.size.raw,
                theirs.aggressor_side,
                theirs.trade_id,
            )
            assert tick.ts_event == msg.event_ns == fut.T * 1_000_000
            trades += 1
    assert books > 2000 and trades > 100


def test_bybit_deltas_equal_nautilus_adapter_output() -> None:
    feed = replay_feeds([BYBIT])[0]
    parser = LineParser(feed)
    for line in RecordedFile(BYBIT).lines():
        msg = parser.parse_all(line)[0]
        assert isinstance(msg, BookMsg)
        decoded = msgspec.json.decode(line.raw, type=BybitWsOrderbookDepthMsg)
        theirs = decoded.data.parse_to_deltas(
            parser.instrument_id,
            feed.price_precision,
            feed.size_precision,
            ts_event=msg.event_ns,
            ts_init=msg.recv_ns,
            snapshot=msg.snapshot,
        )
        assert _levels(msg.deltas) == _levels(theirs)
        # (Nautilus gives its snapshot's CLEAR sequence 0; ingest gives it the book's.)
        assert [d.sequence for d in msg.deltas.deltas][msg.snapshot :] == [
            d.sequence for d in theirs.deltas
        ][msg.snapshot :]


@pytest.mark.parametrize(
    ("text", "precision", "expected"),
    [
        ("61804.7", 1, 618047),
        ("61837.63000000", 2, 6183763),
        ("0.00016000", 8, 16000),
        ("5", 3, 5000),
        ("0", 0, 0),
        ("12.", 2, 1200),
    ],
)
def test_scaled_is_exact(text: str, precision: int, expected: int) -> None:
    assert scaled(text, precision) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", "bad_value"),
        ("+1", "bad_value"),
        ("1e5", "bad_value"),
        ("", "bad_value"),
        (".5", "bad_value"),
        ("1.2.3", "bad_value"),
        (" 1", "bad_value"),
        ("\u0663", "bad_value"),  # a non-ASCII digit int() would accept
        ("1.25", "off_grid"),
        ("1.2x0", "bad_value"),
    ],
)
def test_scaled_rejects_what_is_not_a_plain_decimal_on_the_grid(text: str, reason: str) -> None:
    with pytest.raises(ValueRejection) as err:
        scaled(text, 1)
    assert err.value.reason == reason


def test_level_scaler_memo_matches_and_is_bounded() -> None:
    scaler = LevelScaler(1, 3, max_entries=3)
    iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
    pairs = [("61804.7", "1.5"), ("61804.8", "0"), ("61804.7", "1.5"), ("1.1", "2"), ("2.2", "3")]
    bids, asks, deltas = scaler.book(iid, pairs, [], 1, 0, 0, False)
    assert bids == [(618047, 1500), (618048, 0), (618047, 1500), (11, 2000), (22, 3000)]
    assert asks == [] and deltas is not None
    assert [(d.order.price.raw, d.order.size.raw) for d in deltas.deltas] == [
        (px * RAW_FACTOR[1], sz * RAW_FACTOR[3]) for px, sz in bids
    ]
    assert len(scaler._prices) <= 3 and len(scaler._sizes) <= 3
    with pytest.raises(ValueRejection):
        scaler.book(iid, [("1.25", "1")], [], 1, 0, 0, False)
