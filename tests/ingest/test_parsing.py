"""Recorded lines -> records with the venue ids and exact ints; bad lines are rejections."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_support import BYBIT, DATA, SPOT_2023

from services.ingest.feeds import Feed
from services.ingest.parsing import ParseRejection, parser_for
from services.ingest.recorded import RawLine, RecordedFile, gzip_lines, prefetched
from services.ingest.records import BookUpdate, Quote, Trade
from services.ingest.scaling import ValueRejection, scaled
from tests.support.polling import poll

USDM = Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3)
SPOT = Feed("BINANCE", "spot", "BTCUSDT", "BTCUSDT", 2, 8)
XRP = Feed("BYBIT", "linear", "XRPUSDT", "XRPUSDT", 4, 0)
T0 = 1721347000000000000

DIFF = {
    "stream": "btcusdt@depth@0ms",
    "data": {
        "e": "depthUpdate",
        "E": 1721347001000,
        "T": 1721347000999,
        "s": "BTCUSDT",
        "U": 100,
        "u": 110,
        "pu": 95,
        "b": [["63943.9", "1.234"], ["63940.0", "0"]],
        "a": [["63944.0", "0.500"]],
    },
}
TRADE = {
    "stream": "btcusdt@trade",
    "data": {
        "e": "trade",
        "E": 1721347001000,
        "T": 1721347000998,
        "s": "BTCUSDT",
        "t": 77,
        "p": "63944.0",
        "q": "0.010",
        "X": "INSURANCE_FUND",
        "m": True,
    },
}


def line(obj: object, recv: int | None = T0) -> RawLine:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return RawLine(recv, raw, 1)


def test_futures_diff_keeps_venue_ids_and_exact_levels() -> None:
    msg = parser_for(USDM).parse(line(DIFF))
    assert isinstance(msg, BookUpdate) and not msg.snapshot
    assert (msg.U, msg.u, msg.pu) == (100, 110, 95)
    assert msg.event_ns == 1721347000999 * 1_000_000  # T (transaction time), exact
    assert msg.recv_ns == T0
    assert (msg.bids, msg.asks) == ([(639439, 1234), (639400, 0)], [(639440, 500)])


def test_spot_diff_pu_is_U_minus_one() -> None:
    data = dict(DIFF["data"], U=200, u=204)  # type: ignore[arg-type]
    del data["pu"], data["T"]
    msg = parser_for(SPOT).parse(line({"stream": "btcusdt@depth@100ms", "data": data}))
    assert isinstance(msg, BookUpdate) and (msg.U, msg.u, msg.pu) == (200, 204, 199)
    assert msg.event_ns == 1721347001000 * 1_000_000  # E: spot has no T


def test_futures_trade_keeps_the_liquidation_flag() -> None:
    msg = parser_for(USDM).parse(line(TRADE))
    assert isinstance(msg, Trade) and msg.liq
    assert (msg.id, msg.side, msg.px, msg.sz) == ("77", "S", 639440, 10)
    market = dict(TRADE, data=dict(TRADE["data"], X="MARKET"))  # type: ignore[arg-type]
    plain = parser_for(USDM).parse(line(market))
    assert isinstance(plain, Trade) and not plain.liq


def test_spot_snapshot_without_timestamp_takes_the_feed_watermark() -> None:
    parser = parser_for(SPOT)
    spot_trade = {
        "stream": "btcusdt@trade",
        "data": {
            "e": "trade",
            "E": 5,
            "s": "BTCUSDT",
            "t": 1,
            "p": "1.00000000",
            "q": "1.00000000",
            "T": 1723161254000,
            "m": False,
            "M": True,
        },
    }
    parser.parse(line(spot_trade))
    snapshot = {
        "lastUpdateId": 50,
        "bids": [["61837.63000000", "3.78826000"]],
        "asks": [["61837.64000000", "1.00000000"]],
    }
    msg = parser.parse(line(snapshot, recv=T0))
    assert isinstance(msg, BookUpdate) and msg.snapshot and msg.u == 50
    assert msg.event_ns == 1723161254000 * 1_000_000
    assert (msg.bids, msg.asks) == ([(6183763, 378826000)], [(6183764, 100000000)])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":17213', "malformed"),
        (b"not json at all", "malformed"),
        (json.dumps(dict(DIFF, data=dict(DIFF["data"], U="abc"))).encode(), "malformed"),
        (json.dumps(dict(DIFF, data=dict(DIFF["data"], b=[["x", "1"]]))).encode(), "bad_value"),
        (json.dumps(dict(DIFF, data=dict(DIFF["data"], b=[["1.0", "-1"]]))).encode(), "bad_value"),
        (json.dumps(dict(DIFF, data=dict(DIFF["data"], s="ETHUSDT"))).encode(), "wrong_symbol"),
        (json.dumps(dict(DIFF, stream="btcusdt@kline_1m")).encode(), "unknown_stream"),
        (json.dumps(dict(DIFF, stream="ethusdt@depth@0ms")).encode(), "unknown_stream"),
        (json.dumps(dict(DIFF, data=dict(DIFF["data"], U=120))).encode(), "bad_sequence"),
        (json.dumps(dict(TRADE, data=dict(TRADE["data"], p=None))).encode(), "malformed"),
        (b'{"lastUpdateId": 5, "bids": [["1.0"]], "asks": []}', "malformed"),
    ],
)
def test_bad_lines_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseRejection) as err:
        parser_for(USDM).parse(line(raw))
    assert err.value.reason == reason


def test_line_without_receive_timestamp_is_a_framing_rejection() -> None:
    with pytest.raises(ParseRejection) as err:
        parser_for(USDM).parse(line(DIFF, recv=None))
    assert err.value.reason == "framing"


def test_diff_changing_no_level_still_carries_its_ids() -> None:
    empty = dict(DIFF, data=dict(DIFF["data"], b=[], a=[]))  # type: ignore[arg-type]
    msg = parser_for(USDM).parse(line(empty))
    assert isinstance(msg, BookUpdate) and msg.bids == msg.asks == [] and msg.u == 110


def test_bybit_snapshot_delta_and_u1_reset() -> None:
    parser = parser_for(XRP)
    lines = list(RecordedFile(BYBIT).lines())
    first = parser.parse(lines[0])
    second = parser.parse(lines[1])
    assert isinstance(first, BookUpdate) and first.snapshot and first.u == 20254869
    assert isinstance(second, BookUpdate) and not second.snapshot
    assert (second.U, second.u, second.pu) == (20254870, 20254870, 20254869)
    assert second.recv_ns == second.event_ns  # the file has no receive time
    restart = json.loads(lines[1].raw)
    restart["data"]["u"] = 1
    reset = parser.parse(RawLine(None, json.dumps(restart).encode(), 3))
    assert isinstance(reset, BookUpdate) and reset.snapshot


def test_book_ticker_is_parsed_for_verification() -> None:
    parser = parser_for(SPOT)
    lines = RecordedFile(SPOT_2023).lines()
    next(lines)
    quote = parser.parse(next(lines))
    assert isinstance(quote, Quote) and quote.u == 36090299876
    assert scaled(quote.bid_px, 2) == 2816547


def test_recorded_timestamps_are_ns_in_2024_and_us_in_2023() -> None:
    first_2024 = next(RecordedFile(DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz").lines())
    first_2023 = next(RecordedFile(SPOT_2023).lines())
    assert first_2024.recv_ns is not None and 1.7e18 < first_2024.recv_ns < 1.8e18
    assert first_2023.recv_ns == 1680652800004107 * 1000


def test_truncated_gzip_ends_the_file_and_unframed_lines_pass_through(tmp_path: Path) -> None:
    data = gzip.compress(b"1721347000000000000 {}\ngarbage-without-timestamp\n" * 2000)
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    lines = list(RecordedFile(path).lines())
    assert 0 < len(lines) < 4000
    assert any(x.recv_ns is None for x in lines)


def test_scaling_is_exact_and_refuses_finer_values() -> None:
    assert scaled("61837.63000000", 2) == 6183763
    assert scaled("0.00123000", 8) == 123000
    with pytest.raises(ValueRejection) as err:
        scaled("1.2345", 2)
    assert err.value.reason == "off_grid"


def test_compact_recorded_json_and_spaced_json_parse_the_same() -> None:
    """The recorder's compact lines take the stream-name fast path; others decode fully."""
    compact = line(json.dumps(DIFF, separators=(",", ":")).encode())
    spaced = line(DIFF)
    assert compact.raw.startswith(b'{"stream":"') and not spaced.raw.startswith(b'{"stream":"')
    a, b = parser_for(USDM).parse(compact), parser_for(USDM).parse(spaced)
    assert isinstance(a, BookUpdate) and isinstance(b, BookUpdate)
    fields = ("U", "u", "pu", "bids", "asks", "event_ns")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    other = dict(DIFF, stream="ethusdt@depth@0ms")
    for raw in (json.dumps(other).encode(), json.dumps(other, separators=(",", ":")).encode()):
        with pytest.raises(ParseRejection) as exc:
            parser_for(USDM).parse(line(raw))
        assert exc.value.reason == "unknown_stream"


def test_quotes_false_counts_book_tickers_and_parses_everything_else_the_same() -> None:
    lines = list(RecordedFile(DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz").lines())[:3000]
    usdm = Feed("BINANCE", "usdm", "BTCUSDT", "BTCUSDT", 1, 3)
    full, lean = parser_for(usdm), parser_for(usdm, quotes=False)
    kept: list[tuple[object, ...]] = []
    quotes = 0
    for raw_line in lines:
        for msg in full.parse_all(raw_line):
            if isinstance(msg, Quote):
                quotes += 1
            else:
                kept.append((type(msg).__name__, msg.event_ns, msg.recv_ns))
    lean_msgs = [m for raw_line in lines for m in lean.parse_all(raw_line)]
    assert quotes > 100 and lean.quotes_skipped == quotes
    assert not any(isinstance(m, Quote) for m in lean_msgs)
    assert [(type(m).__name__, m.event_ns, m.recv_ns) for m in lean_msgs] == kept


def test_gzip_lines_equal_gzipfile_across_chunk_and_member_boundaries(tmp_path: Path) -> None:
    body = b"".join(b'%d {"n":%d}\n' % (T0 + n, n) for n in range(3000))
    path = tmp_path / "two-members.gz"
    path.write_bytes(gzip.compress(body[:20_001]) + gzip.compress(body[20_001:]))
    expected = [x.strip() for x in gzip.decompress(path.read_bytes()).split(b"\n") if x.strip()]
    for chunk in (7, 4096, 1 << 18):
        with path.open("rb") as fileobj:
            got = [x.strip() for x in gzip_lines(fileobj, chunk) if x.strip()]
        assert got == expected, chunk
    kit = DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz"
    with gzip.open(kit) as stream:
        reference = [x.strip() for x in stream if x.strip()]
    assert [x.raw for x in RecordedFile(kit).lines()] == [x.partition(b" ")[2] for x in reference]


def test_prefetched_keeps_order_raises_in_order_and_stops_when_closed() -> None:
    assert list(prefetched(iter(range(1000)), depth=3)) == list(range(1000))

    def failing() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    got: list[int] = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(failing(), depth=2):
            got.append(item)
    assert got == [1]
    produced: list[int] = []

    def endless() -> Iterator[int]:
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()

    def prefetch_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "recorded-prefetch"]

    poll(lambda: not prefetch_threads(), timeout=5, what="the producer thread to stop")
    assert len(produced) <= 5 + 2 + 2  # it read ahead by at most the depth, then stopped
