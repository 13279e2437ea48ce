"""Live mode stall watchdog, without a network: a venue stops sending one book feed.

The live clients get recorded WebSocket frames (as in ``test_live_resync.py``; the venue
is a shadow book that answers re-syncs). Binance BTCUSDT stops mid-recording until the
watchdog has declared the stall and the re-sync (REST depth snapshot) has rebuilt the
book, then the rest of the frames follow; Bybit XRPUSDT goes silent after its last frame
and is re-subscribed. Both limits are short per-symbol overrides. Each stream must show
``degraded`` (stall) -> venue ``snap`` -> ``ok`` (Binance: ``degraded`` again after the REST
snapshot while the feed is silent, ``ok`` with the first live diff), stay consistent, lose
nothing and end with the venue's book; stalls and re-syncs are counted.
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
from services.ingest.parsing import BookMsg, LineParser
from services.ingest.recorded import RawLine, RecordedFile
from services.ingest.settings import Settings
from shared import keys
from shared.wire import DeltaPayload, SnapPayload, StatusPayload, decode

BTC_FILE = DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"
LIMIT_S = 1.0


class PausingBinance(LiveBinanceFuturesClient):
    """Plays the frames, stops before ``pause_at`` until ``resume`` is set."""

    frames: list[bytes]
    pause_at: int
    shadow: ShadowVenue
    api: ShadowDepthApi
    paused: asyncio.Event
    resume: asyncio.Event
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
        for i, raw in enumerate(cls.frames):
            if i == cls.pause_at:
                cls.paused.set()
                await cls.resume.wait()  # the venue sends nothing on this feed meanwhile
            cls.shadow.see(raw)
            if b'"stream"' not in raw:  # the initial REST snapshot answer arrived here
                await self._order_book_snapshot_then_deltas(iid)
            else:
                self._handle_ws_message(raw)
            if i % 200 == 0:
                await asyncio.sleep(0)
        cls.done.set()


class SilentBybit(LiveBybitClient):
    """Plays every frame, then the venue goes quiet."""

    frames: list[bytes]
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
        for raw in cls.frames:
            cls.shadow.see(raw)
            self._handle_ws_message(BybitProductType.LINEAR, raw)
        cls.done.set()


def _statuses(entries: list[Any]) -> list[StatusPayload]:
    return [e.payload for e in entries if isinstance(e.payload, StatusPayload)]


async def test_silent_book_feed_is_degraded_resynced_and_rebuilt(redis_url: str) -> None:
    feeds = live_feeds(
        "binance-usdm:BTCUSDT,bybit-linear:XRPUSDT", parse_precisions(""), parse_symbol_map("")
    )
    btc, xrp = (next(f for f in feeds if f.symbol == s) for s in ("BTCUSDT", "XRPUSDT"))
    btc_frames = [line.raw for line in RecordedFile(BTC_FILE).lines()]
    PausingBinance.frames = btc_frames
    PausingBinance.pause_at = 3000  # well after the snapshot (line 14)
    PausingBinance.shadow = ShadowVenue(btc)
    PausingBinance.api = ShadowDepthApi(PausingBinance.shadow)
    PausingBinance.paused = asyncio.Event()
    PausingBinance.resume = asyncio.Event()
    PausingBinance.done = asyncio.Event()
    SilentBybit.frames = [line.raw for line in RecordedFile(BYBIT).lines()]
    SilentBybit.shadow = ShadowVenue(xrp)
    SilentBybit.done = asyncio.Event()

    labels = {"BTCUSDT": "BINANCE", "XRPUSDT": "BYBIT"}
    stalls0 = {s: metrics.STALLS.labels(s)._value.get() for s in labels}
    resubs0 = {s: metrics.RESUBSCRIBES.labels(v, s)._value.get() for s, v in labels.items()}
    settings = Settings(
        redis_url=redis_url,
        ingest_mode="live",
        ingest_nautilus_log_level="ERROR",
        ingest_stall_after_s=60.0,  # the default; both symbols are overridden below
        ingest_stall_after=f"BTCUSDT={LIMIT_S},XRPUSDT={LIMIT_S}",
    )
    classes = LiveClientClasses(binance_futures=PausingBinance, bybit=SilentBybit)
    async with running_live_node(settings, feeds, classes) as run:
        states = run.actor.feed_states()
        await asyncio.wait_for(PausingBinance.paused.wait(), 60)
        # The watchdog sees the silence, asks the venue for a fresh book, and the book
        # is rebuilt from it while the feed is still silent -- but a REST snapshot does
        # not show the socket is alive: the symbol stays degraded until a live diff.
        btc_state = states["BTCUSDT"]
        await until(
            lambda: PausingBinance.api.requests >= 2 and btc_state.sequencer.phase == "ok", 15
        )
        assert btc_state.state == "degraded" and btc_state.await_flow
        assert metrics.STALLS.labels("BTCUSDT")._value.get() >= stalls0["BTCUSDT"] + 1
        PausingBinance.resume.set()
        await until(lambda: btc_state.state == "ok", 15)
        await asyncio.wait_for(PausingBinance.done.wait(), 60)
        await asyncio.wait_for(SilentBybit.done.wait(), 10)
        await until(lambda: len(SilentBybit.ws.calls) >= 2 and states["XRPUSDT"].state == "ok", 15)
        for feed, venue in ((btc, PausingBinance.shadow), (xrp, SilentBybit.shadow)):
            seq = states[feed.symbol].sequencer
            await until(lambda s=seq, v=venue: s.phase == "ok" and book_u(s) == book_u(v.book), 10)
        await asyncio.wait_for(run.side.wait_delivered(), 10)
        for feed in feeds:
            run.actor.end_of_feed(feed.instrument_id, "test over")
        await asyncio.wait_for(run.writer.wait_idle(), 10)
        streams = {
            s: [(eid, decode(f)) for eid, f in await run.client.xrange(keys.stream(s))]
            for s in labels
        }

    for symbol, venue in (("BTCUSDT", PausingBinance.shadow), ("XRPUSDT", SilentBybit.shadow)):
        entries = [e for _, e in streams[symbol]]
        statuses = _statuses(entries)
        first = statuses[0]
        assert first.state == "degraded", (symbol, statuses)
        assert first.reason.startswith("stall: no book update for ")
        assert first.reason.endswith(f"s (expected at most {LIMIT_S:g} s)")
        if symbol == "BTCUSDT":  # REST snapshot: held degraded until live diffs resume
            waiting = "book rebuilt from a REST snapshot; waiting for live updates"
            resumed = next(i for i, st in enumerate(statuses) if st.state == "ok")
            assert resumed >= 2 and statuses[1].reason == waiting
            assert all(st.state == "degraded" for st in statuses[1:resumed])
            assert statuses[resumed].reason == "live book updates resumed after the stall"
        else:  # Bybit's snapshot comes over the socket itself: ok at once
            assert statuses[1].state == "ok"
        # The next book entry after the stall is the venue's fresh snapshot.
        after = entries[entries.index(next(e for e in entries if e.payload is first)) + 1 :]
        book_next = next(e for e in after if e.kind in ("snap", "delta"))
        assert isinstance(book_next.payload, SnapPayload) and book_next.payload.src == "venue"
        # Later silences (after the last frame) may stall again before the test ends.
        assert all(s.state in ("degraded", "ok") for s in statuses[2:-1])
        assert statuses[-1].state == "down"
        check_stream_consistency(streams[symbol])
        # Nothing lost: the consumer's final book is exactly the venue's.
        assert consumer_book(entries) == (venue.book.bids, venue.book.asks)
        assert metrics.STALLS.labels(symbol)._value.get() >= stalls0[symbol] + 1
        resubs = metrics.RESUBSCRIBES.labels(labels[symbol], symbol)._value.get()
        assert resubs >= resubs0[symbol] + 1
    assert SilentBybit.ws.calls[:2] == [
        "unsubscribe orderbook.500.XRPUSDT",
        "subscribe orderbook.500.XRPUSDT",
    ]
    # BTCUSDT: every recorded diff after the pause reached the stream, in order, on top of
    # the fresh snapshot (none was applied to the stale book or lost meanwhile).
    entries = [e for _, e in streams["BTCUSDT"]]
    stall_snap = next(
        i
        for i, e in enumerate(entries)
        if isinstance(e.payload, SnapPayload) and e.payload.src == "venue" and i > 1
    )
    published = [e.payload.u for e in entries[stall_snap:] if isinstance(e.payload, DeltaPayload)]
    parser = LineParser(btc)
    recorded = [
        m.u
        for raw in btc_frames[PausingBinance.pause_at :]
        if b"@depth" in raw[:40]
        for m in parser.parse_all(RawLine(1, raw, 0))
        if isinstance(m, BookMsg)
    ]
    assert published == recorded and len(recorded) > 2000
