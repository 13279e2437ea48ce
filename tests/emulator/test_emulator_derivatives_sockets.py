"""The emulator's synthetic derivatives streams and REST over real sockets (plain aiohttp).

No recording of these streams exists: the emulator synthesises them (derivatives.py).
Checked here: the documented shapes and names on the wire (Binance USDⓈ-M
``<sym>@markPrice@1s``, ``<sym>@forceOrder``, ``GET /fapi/v1/openInterest``; Bybit linear
``tickers.SYM`` snapshot then deltas, ``allLiquidation.SYM``), Binance's REST errors and
weight header, and that ``GET /_emulator/derivatives`` lists exactly what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from context8.emulator.process import EmulatorProcess
from tests.conftest import DATA

pytestmark = pytest.mark.timeout(120)

USDM = "binance-usdm"
BYBIT = "bybit-linear"
FILES = [
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip",
]


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(FILES, speed=2, start="manual") as process:
        yield process


async def _frames(ws: aiohttp.ClientWebSocketResponse, want: int) -> list[dict[str, Any]]:
    """The next ``want`` data frames (control replies skipped, pings answered)."""
    out: list[dict[str, Any]] = []
    while len(out) < want:
        msg = await ws.receive(timeout=10)
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
            continue
        assert msg.type is aiohttp.WSMsgType.TEXT, msg.type
        frame = json.loads(msg.data)
        if "stream" in frame or "topic" in frame:
            out.append(frame)
    return out


async def test_binance_mark_price_force_order_and_open_interest(emu: EmulatorProcess) -> None:
    streams = "btcusdt@markPrice@1s/btcusdt@forceOrder"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{emu.ws_base(USDM)}/stream?streams={streams}") as ws,
    ):
        emu.start_clocks(USDM, "BTCUSDT")
        frames = await _frames(ws, 12)
        marks = [f for f in frames if f["stream"] == "btcusdt@markPrice@1s"]
        orders = [f for f in frames if f["stream"] == "btcusdt@forceOrder"]
        assert marks and len(marks) + len(orders) == len(frames)
        for f in marks:
            assert set(f["data"]) == {"e", "E", "s", "p", "i", "P", "r", "T"}
            assert (f["data"]["e"], f["data"]["s"]) == ("markPriceUpdate", "BTCUSDT")
        for f in orders:
            assert set(f["data"]) == {"e", "E", "o"} and f["data"]["e"] == "forceOrder"
            assert set(f["data"]["o"]) == {"s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"}
            assert f["data"]["o"]["S"] in ("BUY", "SELL")
        seconds = [f["data"]["E"] // 1000 for f in marks]
        assert len(set(seconds)) == len(seconds)  # one per exchange second

        url = f"{emu.http_base(USDM)}/fapi/v1/openInterest"
        async with session.get(url, params={"symbol": "BTCUSDT"}) as resp:
            assert resp.status == 200 and "X-MBX-USED-WEIGHT-1M" in resp.headers
            body = await resp.json()
        assert set(body) == {"openInterest", "symbol", "time"} and body["symbol"] == "BTCUSDT"
        assert float(body["openInterest"]) > 0
        async with session.get(url) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == -1102
        async with session.get(url, params={"symbol": "NOPE"}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == -1121

    served = emu.derivatives(USDM, "BTCUSDT")
    sent_texts = [json.dumps(f, sort_keys=True) for f in frames]
    served_texts = [json.dumps(f, sort_keys=True) for f in served if "rest" not in f]
    assert sent_texts == served_texts[: len(sent_texts)]
    assert {"rest": "openInterest", **body} in served


async def test_bybit_tickers_and_all_liquidations(emu: EmulatorProcess) -> None:
    topics = ["tickers.XRPUSDT", "allLiquidation.XRPUSDT", "orderbook.50.XRPUSDT"]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(emu.ws_base(BYBIT)) as ws,
    ):
        await ws.send_json({"op": "subscribe", "args": topics, "req_id": "d1"})
        reply = json.loads((await ws.receive(timeout=10)).data)
        assert reply["success"] is True and reply["op"] == "subscribe"
        emu.start_clocks(BYBIT, "XRPUSDT")
        frames = await _frames(ws, 20)
        tickers = [f for f in frames if f["topic"] == "tickers.XRPUSDT"]
        liqs = [f for f in frames if f["topic"] == "allLiquidation.XRPUSDT"]
        assert tickers and liqs
        for f in tickers:
            assert f["type"] == "delta" and set(f) == {"topic", "type", "data", "cs", "ts"}
            assert set(f["data"]) == {
                "symbol",
                "markPrice",
                "indexPrice",
                "fundingRate",
                "nextFundingTime",
                "openInterest",
                "openInterestValue",
            }
        for f in liqs:
            assert f["type"] == "snapshot"
            (item,) = f["data"]
            assert set(item) == {"T", "s", "S", "v", "p"} and item["S"] in ("Buy", "Sell")
        # A later subscriber gets the newest values at once, as a snapshot.
        async with session.ws_connect(emu.ws_base(BYBIT)) as late:
            await late.send_json({"op": "subscribe", "args": ["tickers.XRPUSDT"]})
            (snapshot,) = await _frames(late, 1)
        served = [f for f in emu.derivatives(BYBIT, "XRPUSDT") if f["topic"].startswith("tickers.")]
        assert snapshot["type"] == "snapshot"
        assert (snapshot["ts"], snapshot["data"]) == (served[-1]["ts"], served[-1]["data"])
