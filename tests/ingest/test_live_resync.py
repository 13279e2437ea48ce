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
from typing import Any

from ingest_support import BYBIT, DATA, check_stream_consistency
from live_support import (
    ShadowBybitWs,
    ShadowDepthApi,
    ShadowVenue,
    book_u,
    consumer_book,
    nth_book_frame,
    running_live_node,
    until,
)
from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest import metrics
from services.ingest.feeds import parse_precisions, parse_symbol_map
from services.ingest.live import (
    LiveBinanceFuturesClient,
    LiveBybitClient,
    LiveClientClasses,
    live_feeds,
)
from services.ingest.recorded import RecordedFile
from services.ingest.settings import Settings
from shared import keys
from shared.wire import StatusPayload, decode

BTC_FILE = DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"


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


async def test_gap_in_live_mode_resyncs_from_a_fresh_venue_book(redis_url: str) -> None:
    feeds = live_feeds(
        "binance-usdm:BTCUSDT,bybit-linear:XRPUSDT", parse_precisions(""), parse_symbol_map("")
    )
    btc, xrp = (next(f for f in feeds if f.symbol == s) for s in ("BTCUSDT", "XRPUSDT"))
    btc_frames = [line.raw for line in RecordedFile(BTC_FILE).lines()]
    xrp_frames = [line.raw for line in RecordedFile(BYBIT).lines()]
    GapBinance.frames = btc_frames
    GapBinance.lost = [nth_book_frame(btc_frames, 600)]  # well after the snapshot
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
    classes = LiveClientClasses(binance_futures=GapBinance, bybit=GapBybit)
    async with running_live_node(settings, feeds, classes) as run:
        await asyncio.wait_for(GapBinance.done.wait(), 60)
        await asyncio.wait_for(GapBybit.done.wait(), 10)
        states = run.actor.feed_states()
        for feed, venue in ((btc, GapBinance.shadow), (xrp, GapBybit.shadow)):
            seq = states[feed.symbol].sequencer
            # Rebuilt and caught up with the venue's last update.
            await until(lambda s=seq, v=venue: s.phase == "ok" and book_u(s) == book_u(v.book), 10)
        await asyncio.wait_for(run.side.wait_delivered(), 10)
        for feed in feeds:
            run.actor.end_of_feed(feed.instrument_id, "test over")
        await asyncio.wait_for(run.writer.wait_idle(), 10)
        streams = {
            s: [(eid, decode(f)) for eid, f in await run.client.xrange(keys.stream(s))]
            for s in ("BTCUSDT", "XRPUSDT")
        }

    for symbol, venue in (("BTCUSDT", GapBinance.shadow), ("XRPUSDT", GapBybit.shadow)):
        entries = streams[symbol]
        statuses = [e.payload.state for _, e in entries if isinstance(e.payload, StatusPayload)]
        assert statuses == ["resync", "ok", "down"], (symbol, statuses)
        counts = check_stream_consistency(entries)
        assert counts["snap:venue"] == 2
        # The consumer's final book is exactly the venue's: nothing stale survived.
        bids, asks = consumer_book([e for _, e in entries])
        assert (bids, asks) == (venue.book.bids, venue.book.asks)
        label = ("BINANCE" if symbol == "BTCUSDT" else "BYBIT", symbol)
        assert metrics.RESUBSCRIBES.labels(*label)._value.get() == resubs[symbol] + 1
    assert GapBinance.api.requests == 2  # the initial snapshot and the one re-sync
    assert GapBybit.ws.calls == [
        "unsubscribe orderbook.500.XRPUSDT",
        "subscribe orderbook.500.XRPUSDT",
    ]
