"""Records -> Nautilus objects (raw constructors) equal what Nautilus's adapters build;
venue text -> exact scaled ints."""

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

from services.ingest.feeds import replay_feeds
from services.ingest.nautilus_data import book_deltas, trade_tick
from services.ingest.parsing import parser_for
from services.ingest.recorded import RecordedFile
from services.ingest.records import BookUpdate, Trade
from services.ingest.scaling import LevelScaler, ValueRejection, scaled

COINM = DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz"


def _levels(deltas: object) -> list[tuple[object, object, int, int]]:
    return [
        (d.action, d.order.side, d.order.price.raw, d.order.size.raw)
        for d in deltas.deltas  # type: ignore[attr-defined]
    ]


def test_binance_deltas_and_trades_equal_nautilus_adapter_output() -> None:
    feed = replay_feeds([COINM])[0]
    parser = parser_for(feed)
    iid = InstrumentId.from_str(feed.instrument_id)
    pp, sp = feed.price_precision, feed.size_precision
    books = trades = 0
    for line in itertools.islice(RecordedFile(COINM).lines(), 6000):
        msg = parser.parse_all(line)[0]
        assert line.recv_ns is not None
        if isinstance(msg, BookUpdate) and msg.snapshot:
            ours = book_deltas(msg, iid, pp, sp)
            theirs = msgspec.json.decode(line.raw, type=BinanceDepth).parse_to_order_book_snapshot(
                iid, line.recv_ns
            )
            assert _levels(ours) == _levels(theirs)  # CLEAR, then every level
            books += 1
        elif isinstance(msg, BookUpdate) and (msg.bids or msg.asks):
            ours = book_deltas(msg, iid, pp, sp)
            assert ours is not None
            data = msgspec.json.decode(line.raw, type=BinanceOrderBookMsg).data
            theirs = data.parse_to_order_book_deltas(iid, line.recv_ns)
            assert _levels(ours) == _levels(theirs)
            ours_meta = [(d.flags, d.sequence, d.ts_init) for d in ours.deltas]
            assert ours_meta == [(d.flags, d.sequence, d.ts_init) for d in theirs.deltas]
            assert all(d.ts_event == msg.event_ns for d in ours.deltas)
            books += 1
        elif isinstance(msg, Trade):
            fut = msgspec.json.decode(line.raw, type=BinanceFuturesTradeMsg).data
            theirs = fut.parse_to_trade_tick(iid, line.recv_ns)
            tick = trade_tick(msg, iid, pp, sp)
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
    parser = parser_for(feed)
    iid = InstrumentId.from_str(feed.instrument_id)
    for line in RecordedFile(BYBIT).lines():
        msg = parser.parse_all(line)[0]
        assert isinstance(msg, BookUpdate)
        ours = book_deltas(msg, iid, feed.price_precision, feed.size_precision)
        decoded = msgspec.json.decode(line.raw, type=BybitWsOrderbookDepthMsg)
        theirs = decoded.data.parse_to_deltas(
            iid,
            feed.price_precision,
            feed.size_precision,
            ts_event=msg.event_ns,
            ts_init=msg.recv_ns,
            snapshot=msg.snapshot,
        )
        assert _levels(ours) == _levels(theirs)
        # Nautilus's sequence is Bybit's cross sequence ``seq``; ingest's records carry the
        # update id ``u`` (the one its sequencer checks) and the deltas take that.
        assert ours is not None and {d.sequence for d in ours.deltas} == {msg.u}


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
    pairs = [("61804.7", "1.5"), ("61804.8", "0"), ("61804.7", "1.5"), ("1.1", "2"), ("2.2", "3")]
    assert scaler.levels(pairs) == [
        (618047, 1500),
        (618048, 0),
        (618047, 1500),
        (11, 2000),
        (22, 3000),
    ]
    assert len(scaler._prices) <= 3 and len(scaler._sizes) <= 3
    with pytest.raises(ValueRejection):
        scaler.levels([("1.25", "1")])


def test_a_diff_without_levels_has_no_nautilus_object_and_f_last_marks_the_end() -> None:
    iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
    assert book_deltas(BookUpdate(False, 5, 6, 4, [], [], 1, 2), iid, 1, 3) is None
    deltas = book_deltas(BookUpdate(False, 5, 6, 4, [(10, 1)], [(11, 0)], 1, 2), iid, 1, 3)
    assert deltas is not None
    assert [d.flags for d in deltas.deltas] == [0, 128]  # F_LAST on the last only
    assert [d.action.name for d in deltas.deltas] == ["UPDATE", "DELETE"]
