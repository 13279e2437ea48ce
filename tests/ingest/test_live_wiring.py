"""Live mode wiring without a network: Nautilus's Binance/Bybit clients fed recorded frames.

The clients are the live ones (``LiveBinanceFuturesClient``, ``LiveBybitClient``: the
Nautilus adapters with public, key-less HTTP and a local instrument table) with only the
network replaced: WebSocket frames from the recording go into the adapter's own
``_handle_ws_message`` and the REST depth snapshot is served from the recorded snapshot
line through Nautilus's ``BinanceDepth`` schema, when it arrived in the recording. The
node, the Actor, the writer and Redis are real, and the book entries must equal what the
replay path derives from the same file.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
from ingest_support import BYBIT, DATA, replay_session
from live_support import running_live_node
from nautilus_trader.adapters.binance.common.schemas.market import BinanceDepth
from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest.feeds import parse_precisions, parse_symbol_map
from services.ingest.live import (
    LiveBinanceFuturesClient,
    LiveBybitClient,
    LiveClientClasses,
    PublicBinanceHttpClient,
    live_feeds,
)
from services.ingest.recorded import RecordedFile
from services.ingest.sequencer import DeltaOut, SnapOut
from services.ingest.settings import Settings
from shared import keys
from shared.wire import DeltaPayload, SnapPayload, StatusPayload, decode

BTC_FILE = DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"


class RecordedMarketApi:
    """Stands in for Binance's REST market API: answers with the recorded snapshot."""

    def __init__(self, raw: bytes) -> None:
        self._depth = msgspec.json.decode(raw, type=BinanceDepth)

    async def request_order_book_snapshot(
        self, instrument_id: InstrumentId, limit: int, ts_init: int
    ) -> Any:
        return self._depth.parse_to_order_book_snapshot(instrument_id, ts_init)


class _Recorded:
    """Mixin: no sockets; after the subscriptions, play the recorded frames."""

    done: asyncio.Event
    frames: list[bytes]

    async def _connect(self) -> None:
        self._send_all_instruments_to_data_engine()  # type: ignore[attr-defined]

    async def _disconnect(self) -> None:
        return None

    def _start_playback(self) -> None:
        if not getattr(self, "_playing", False):
            self._playing = True
            self.create_task(self._play())  # type: ignore[attr-defined]


class RecordedBinance(_Recorded, LiveBinanceFuturesClient):
    async def _subscribe_order_book(self, command: Any) -> None:
        self._book_depths[command.instrument_id] = 1000
        self._start_playback()

    async def _subscribe_trade_ticks(self, command: Any) -> None:
        return None

    async def _play(self) -> None:
        iid = InstrumentId.from_str("BTCUSDT-PERP.BINANCE")
        for i, raw in enumerate(type(self).frames):
            if b'"stream"' not in raw:  # the REST snapshot answer arrived here
                self._http_market = RecordedMarketApi(raw)
                await self._order_book_snapshot_then_deltas(iid)
            else:
                self._handle_ws_message(raw)
            if i % 500 == 0:
                await asyncio.sleep(0)
        type(self).done.set()


class RecordedBybit(_Recorded, LiveBybitClient):
    async def _subscribe_order_book_deltas(self, command: Any) -> None:
        self._depths[command.instrument_id] = 500
        self._start_playback()

    async def _subscribe_trade_ticks(self, command: Any) -> None:
        return None

    async def _play(self) -> None:
        for raw in type(self).frames:
            self._handle_ws_message(BybitProductType.LINEAR, raw)
        # A trade frame as Bybit's public WebSocket sends it (no file of them exists).
        trade = (
            b'{"topic":"publicTrade.XRPUSDT","type":"snapshot","ts":1733011205500,'
            b'"data":[{"T":1733011205499,"s":"XRPUSDT","S":"Sell","v":"120","p":"1.9537",'
            b'"L":"MinusTick","i":"a1","BT":false}]}'
        )
        self._handle_ws_message(BybitProductType.LINEAR, trade)
        type(self).done.set()


def _wire(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Any]:
    return [decode(fields) for _, fields in entries]


async def test_live_clients_feed_the_same_actor_and_match_the_replay(redis_url: str) -> None:
    RecordedBinance.frames = [line.raw for line in RecordedFile(BTC_FILE).lines()]
    RecordedBybit.frames = [line.raw for line in RecordedFile(BYBIT).lines()]
    RecordedBinance.done = asyncio.Event()
    RecordedBybit.done = asyncio.Event()
    settings = Settings(redis_url=redis_url, ingest_mode="live", ingest_nautilus_log_level="ERROR")
    feeds = live_feeds(
        "binance-usdm:BTCUSDT,bybit-linear:XRPUSDT", parse_precisions(""), parse_symbol_map("")
    )
    classes = LiveClientClasses(binance_futures=RecordedBinance, bybit=RecordedBybit)
    async with running_live_node(settings, feeds, classes) as run:
        await asyncio.wait_for(RecordedBinance.done.wait(), 60)
        await asyncio.wait_for(RecordedBybit.done.wait(), 10)
        await asyncio.wait_for(run.side.wait_delivered(), 10)
        for feed in feeds:
            run.actor.end_of_feed(feed.instrument_id, "test over")
        await asyncio.wait_for(run.writer.wait_idle(), 10)
        btc = _wire(await run.client.xrange(keys.stream("BTCUSDT")))
        xrp = _wire(await run.client.xrange(keys.stream("XRPUSDT")))

    # The same book entries as the replay path derives from the same file.
    replay = replay_session([BTC_FILE])
    expected = [(o.U, o.u, o.pu, o.bids, o.asks) for o in replay.outputs if isinstance(o, DeltaOut)]
    got = [
        (
            e.payload.U,
            e.payload.u,
            e.payload.pu,
            [tuple(x) for x in e.payload.b],
            [tuple(x) for x in e.payload.a],
        )
        for e in btc
        if isinstance(e.payload, DeltaPayload)
    ]
    assert got == expected and len(got) > 3000
    snap = btc[0].payload
    first = replay.outputs[0]
    assert isinstance(snap, SnapPayload) and isinstance(first, SnapOut)
    assert (snap.u, [tuple(x) for x in snap.b]) == (first.u, first.bids)
    trades = [e for e in btc if e.kind == "trade"]
    assert len(trades) == len(replay.trades) == 974
    assert [e.payload.state for e in btc if isinstance(e.payload, StatusPayload)] == ["down"]

    xrp_book = [e for e in xrp if e.kind in ("snap", "delta")]
    assert xrp_book[0].kind == "snap" and len(xrp_book) == 50
    assert all(e.payload.pu == p.payload.u for p, e in itertools.pairwise(xrp_book))
    (trade,) = [e.payload for e in xrp if e.kind == "trade"]
    assert (trade.px, trade.sz, trade.side, trade.id) == (19537, 120, "S", "a1")


def test_public_binance_http_client_sends_no_key_header() -> None:
    from nautilus_trader.common.component import LiveClock

    http = PublicBinanceHttpClient(LiveClock(), "https://fapi.binance.com")
    assert "X-MBX-APIKEY" not in http.headers


def test_live_symbols_spec_errors_are_config_errors() -> None:
    import pytest

    from shared.errors import ConfigError

    none: dict[str, tuple[int, int]] = {}
    with pytest.raises(ConfigError, match="want <venue>-<market>:<SYMBOL>"):
        live_feeds("BTCUSDT", none, {})
    with pytest.raises(ConfigError, match="unknown live symbol DOGEUSDT on binance-usdm"):
        live_feeds("binance-usdm:DOGEUSDT", none, {})
    with pytest.raises(ConfigError, match="two feeds publish"):
        live_feeds("binance-usdm:BTCUSDT,binance-spot:BTCUSDT", none, {})
    with pytest.raises(ConfigError, match="needs C8_INGEST_LIVE_SYMBOLS"):
        live_feeds("", none, {})
