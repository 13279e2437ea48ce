"""Live mode after a gap, without a network: a recorded frame is lost on the way in.

The live clients (Nautilus's Binance futures / Bybit data clients with ingest's
subclasses) are fed recorded WebSocket frames with one book frame dropped. The venue
itself is simulated by a *shadow* book: every recorded frame (the dropped one included,
the venue did not lose it) is applied to a plain ``BookSequencer``. When ingest asks for
a fresh book -- Binance: the REST depth snapshot, Bybit: unsubscribe + subscribe -- it
gets the shadow book as the venue would send it at that moment. The stream must show
``resync``, then a venue ``snap`` and ``ok``, stay consistent, and end with exactly the
venue's book; the re-sync is counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from ingest_support import BYBIT, DEMO, check_stream_consistency
from nautilus_trader.adapters.binance.common.schemas.market import BinanceDepth
from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest import metrics
from services.ingest.convert import book_update
from services.ingest.feeds import Feed, parse_precisions, parse_symbol_map
from services.ingest.live import (
    LiveBinanceFuturesClient,
    LiveBybitClient,
    LiveClientClasses,
    build_live_node,
    live_feeds,
)
from services.ingest.parsing import BookMsg, LineParser, ParseRejection
from services.ingest.recorded import RawLine, RecordedFile
from services.ingest.sequencer import BookSequencer, Rule
from services.ingest.settings import Settings
from services.ingest.side_channel import SideChannel
from services.ingest.writer import StreamWriter
from shared import keys
from shared.wire import DeltaPayload, SnapPayload, StatusPayload, decode

BTC_FILE = DEMO / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"


def _text(value: int, precision: int) -> str:
    whole, frac = divmod(value, 10**precision)
    return f"{whole}.{frac:0{precision}d}" if precision else str(whole)


class ShadowVenue:
    """The venue's true book: every recorded book frame applied, none lost."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.parser = LineParser(feed)
        self.book = BookSequencer(Rule.FUTURES if feed.is_futures else Rule.NEXT_ID)
        self.last_ms = 0

    def see(self, raw: bytes) -> None:
        try:
            msgs = self.parser.parse_all(RawLine(1, raw, 0))
        except ParseRejection:
            return
        for msg in msgs:
            if isinstance(msg, BookMsg):
                self.last_ms = msg.event_ns // 1_000_000
                self.book.on_update(
                    book_update(msg, self.feed.price_precision, self.feed.size_precision)
                )

    def levels(self) -> tuple[int, list[list[str]], list[list[str]]]:
        pp, sp = self.feed.price_precision, self.feed.size_precision
        u = _u(self.book)
        assert u is not None and self.book.phase == "ok"
        bids = [[_text(p, pp), _text(s, sp)] for p, s in sorted(self.book.bids.items())[::-1]]
        asks = [[_text(p, pp), _text(s, sp)] for p, s in sorted(self.book.asks.items())]
        return u, bids, asks


class ShadowDepthApi:
    """Binance's REST ``depth`` as the venue would answer it now (Nautilus's schema)."""

    def __init__(self, venue: ShadowVenue) -> None:
        self.venue = venue
        self.requests = 0

    async def request_order_book_snapshot(
        self, instrument_id: InstrumentId, limit: int, ts_init: int
    ) -> Any:
        self.requests += 1
        u, bids, asks = self.venue.levels()
        body = {
            "lastUpdateId": u,
            "E": self.venue.last_ms,
            "T": self.venue.last_ms,
            "bids": bids,
            "asks": asks,
        }
        depth = msgspec.json.decode(json.dumps(body).encode(), type=BinanceDepth)
        return depth.parse_to_order_book_snapshot(instrument_id, ts_init)


class ShadowBybitWs:
    """Bybit's public WebSocket: subscribing to a book topic sends the book's snapshot."""

    def __init__(self, client: Any, venue: ShadowVenue) -> None:
        self.client = client
        self.venue = venue
        self.calls: list[str] = []

    async def unsubscribe_order_book(self, symbol: str, depth: int) -> None:
        self.calls.append(f"unsubscribe orderbook.{depth}.{symbol}")

    async def subscribe_order_book(self, symbol: str, depth: int) -> None:
        self.calls.append(f"subscribe orderbook.{depth}.{symbol}")
        u, bids, asks = self.venue.levels()
        frame = {
            "topic": f"orderbook.{depth}.{symbol}",
            "type": "snapshot",
            "ts": self.venue.last_ms,
            "data": {"s": symbol, "b": bids, "a": asks, "u": u, "seq": u},
            "cts": self.venue.last_ms,
        }
        self.client._handle_ws_message(BybitProductType.LINEAR, json.dumps(frame).encode())


def _nth_book_frame(frames: list[bytes], nth: int) -> bytes:
    """The ``nth`` Binance depth diff frame (1-based)."""
    diffs = [raw for raw in frames if b"@depth" in raw[:40]]
    return diffs[nth - 1]


class GapBinance(LiveBinanceFuturesClient):
    frames: list[bytes]
    lost: list[bytes]
    shadow: ShadowVenue
    api: ShadowDepthApi
    done: asyncio.Event

    async def _connect(self) -> None:
        self._send_all_instruments_to_data_engine()

    async def _disconnect(self) -> None:
        return None

    async def _subscribe_order_book(self, command: Any) -> None:
        self._book_depths[command.instrument_id] = 1000
        self.create_task(self._play())

    async def _subscribe_trade_ticks(self, command: Any) -> None:
        return None

    async def _play(self) -> None:
        cls = type(self)
        self._http_market = cls.api
        iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
        lost = set(map(id, cls.lost))
        for i, raw in enumerate(cls.frames):
            cls.shadow.see(raw)
            if id(raw) in lost:
                continue  # the venue sent it; ingest never got it
            if b'"stream"' not in raw:  # the initial REST snapshot answer arrived here
                await self._order_book_snapshot_then_deltas(iid)
            else:
                self._handle_ws_message(raw)
            if i % 200 == 0:
                await asyncio.sleep(0)  # lets a requested re-sync run mid-stream
        cls.done.set()


class GapBybit(LiveBybitClient):
    frames: list[bytes]
    lost: list[bytes]
    shadow: ShadowVenue
    ws: ShadowBybitWs
    done: asyncio.Event

    async def _connect(self) -> None:
        self._send_all_instruments_to_data_engine()
        type(self).ws = ShadowBybitWs(self, type(self).shadow)
        self._ws_clients[BybitProductType.LINEAR] = type(self).ws

    async def _disconnect(self) -> None:
        return None

    async def _subscribe_order_book_deltas(self, command: Any) -> None:
        self._depths[command.instrument_id] = 500
        self.create_task(self._play())

    async def _subscribe_trade_ticks(self, command: Any) -> None:
        return None

    async def _play(self) -> None:
        cls = type(self)
        lost = set(map(id, cls.lost))
        for raw in cls.frames:
            cls.shadow.see(raw)
            if id(raw) not in lost:
                self._handle_ws_message(BybitProductType.LINEAR, raw)
        cls.done.set()


def _consumer_book(entries: list[Any]) -> tuple[dict[int, int], dict[int, int]]:
    """The book a plain consumer holds at the end of the stream."""
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    for entry in entries:
        p = entry.payload
        if isinstance(p, SnapPayload):
            bids, asks = dict(p.b), dict(p.a)
        elif isinstance(p, DeltaPayload):
            for side, levels in ((bids, p.b), (asks, p.a)):
                for price, size in levels:
                    if size:
                        side[price] = size
                    else:
                        side.pop(price, None)
        elif isinstance(p, StatusPayload) and p.state == "resync":
            bids, asks = {}, {}
    return bids, asks


def _u(book: BookSequencer) -> int | None:
    """The update id a book is valid at (a bare snapshot has applied no diff yet)."""
    return book.last_u if book.last_u is not None else book.snapshot_u


async def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def test_gap_in_live_mode_resyncs_from_a_fresh_venue_book(redis_url: str) -> None:
    feeds = live_feeds(
        "binance-usdm:BTCUSDT,bybit-linear:XRPUSDT", parse_precisions(""), parse_symbol_map("")
    )
    btc, xrp = (next(f for f in feeds if f.symbol == s) for s in ("BTCUSDT", "XRPUSDT"))
    btc_frames = [line.raw for line in RecordedFile(BTC_FILE).lines()]
    xrp_frames = [line.raw for line in RecordedFile(BYBIT).lines()]
    GapBinance.frames = btc_frames
    GapBinance.lost = [_nth_book_frame(btc_frames, 600)]  # well after the snapshot
    GapBinance.shadow = ShadowVenue(btc)
    GapBinance.api = ShadowDepthApi(GapBinance.shadow)
    GapBinance.done = asyncio.Event()
    GapBybit.frames = xrp_frames
    GapBybit.lost = [xrp_frames[20]]  # a delta (line 1 is the snapshot)
    GapBybit.shadow = ShadowVenue(xrp)
    GapBybit.done = asyncio.Event()

    resubs = {
        s: metrics.RESUBSCRIBES.labels(v, s)._value.get()
        for v, s in (("BINANCE", "BTCUSDT"), ("BYBIT", "XRPUSDT"))
    }
    settings = Settings(redis_url=redis_url, ingest_mode="live", ingest_nautilus_log_level="ERROR")
    client = aioredis.Redis.from_url(redis_url)
    writer = StreamWriter(client, maxlen=100_000)
    writer_task = asyncio.create_task(writer.run())
    side = SideChannel()
    classes = LiveClientClasses(binance_futures=GapBinance, bybit=GapBybit)
    node, actor = build_live_node(
        settings, feeds, side, writer, structlog.get_logger(), classes=classes
    )
    node_task = asyncio.create_task(node.run_async())
    try:
        await asyncio.wait_for(GapBinance.done.wait(), 60)
        await asyncio.wait_for(GapBybit.done.wait(), 10)
        states = actor.feed_states()
        for feed, venue in ((btc, GapBinance.shadow), (xrp, GapBybit.shadow)):
            seq = states[feed.symbol].sequencer
            # Rebuilt and caught up with the venue's last update.
            await _until(lambda s=seq, v=venue: s.phase == "ok" and _u(s) == _u(v.book), 10)
        await asyncio.wait_for(side.wait_delivered(), 10)
        for feed in feeds:
            actor.end_of_feed(feed.instrument_id, "test over")
        await asyncio.wait_for(writer.wait_idle(), 10)
        streams = {
            s: [(eid, decode(f)) for eid, f in await client.xrange(keys.stream(s))]
            for s in ("BTCUSDT", "XRPUSDT")
        }
    finally:
        await node.stop_async()
        node_task.cancel()
        await asyncio.gather(node_task, return_exceptions=True)
        await writer.close()
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        await client.aclose()

    for symbol, venue in (("BTCUSDT", GapBinance.shadow), ("XRPUSDT", GapBybit.shadow)):
        entries = streams[symbol]
        statuses = [e.payload.state for _, e in entries if isinstance(e.payload, StatusPayload)]
        assert statuses == ["resync", "ok", "down"], (symbol, statuses)
        counts = check_stream_consistency(entries)
        assert counts["snap:venue"] == 2
        # The consumer's final book is exactly the venue's: nothing stale survived.
        bids, asks = _consumer_book([e for _, e in entries])
        assert (bids, asks) == (venue.book.bids, venue.book.asks)
        label = ("BINANCE" if symbol == "BTCUSDT" else "BYBIT", symbol)
        assert metrics.RESUBSCRIBES.labels(*label)._value.get() == resubs[symbol] + 1
    assert GapBinance.api.requests == 2  # the initial snapshot and the one re-sync
    assert GapBybit.ws.calls == [
        "unsubscribe orderbook.500.XRPUSDT",
        "subscribe orderbook.500.XRPUSDT",
    ]
