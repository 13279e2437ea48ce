"""The venue emulator over real sockets: a plain aiohttp client and Nautilus's own clients.

One emulator process (USD-M BTCUSDT 2024-07-18 + Bybit XRPUSDT, speed 20, renamed copies
so every test gets a symbol whose clock starts when it subscribes) serves the protocol,
pacing and fault tests; a second one (spot, clocks started at once) takes the IP-wide
limit tests, which leave the IP over its limits for the rest of the minute.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.futures.http.market import BinanceFuturesMarketHttpAPI
from nautilus_trader.adapters.binance.http.client import BinanceHttpClient
from nautilus_trader.adapters.binance.http.error import BinanceClientError
from nautilus_trader.adapters.binance.websocket.client import BinanceWebSocketClient
from nautilus_trader.adapters.bybit.schemas.ws import decoder_ws_orderbook
from nautilus_trader.adapters.bybit.websocket.client import BybitWebSocketClient
from nautilus_trader.common.component import LiveClock
from nautilus_trader.model.enums import BookAction, OrderSide
from nautilus_trader.model.identifiers import InstrumentId

from context8.emulator.copies import copy_names
from context8.emulator.process import EmulatorError, EmulatorProcess
from tests.conftest import DATA
from tests.support.polling import apoll

pytestmark = pytest.mark.timeout(120)

SPEED = 20
USDM = "binance-usdm"
BYBIT = "bybit-linear"
USDM_FILE = DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"
BYBIT_FILE = DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"
SPOT_FILE = DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz"
_BTC = iter(copy_names("BTCUSDT", 14))
_XRP = iter(copy_names("XRPUSDT", 3))


def fresh_btc() -> str:
    """A USD-M symbol no other test has touched: its clock starts when we subscribe."""
    return next(_BTC)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(
        [USDM_FILE, BYBIT_FILE],
        speed=SPEED,
        copies=["binance-usdm:BTCUSDT=14", "bybit-linear:XRPUSDT=3"],
        # Nautilus answers each ping twice (tungstenite's own pong + its ping handler's), and
        # pongs count towards 10 messages/s: stay well below.
        ping_interval=0.4,
    ) as process:
        yield process


@pytest.fixture(scope="module")
def spot_emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess([SPOT_FILE], speed=SPEED, start="now") as process:
        yield process


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as client:
        yield client


def combined_url(emu: EmulatorProcess, symbol: str, *kinds: str) -> str:
    lower = symbol.lower()
    return emu.ws_base(USDM) + "/stream?streams=" + "/".join(f"{lower}@{k}" for k in kinds)


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Any:
    """The next text message as JSON, answering server pings on the way."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is aiohttp.WSMsgType.TEXT:
            return json.loads(msg.data)
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
            continue
        raise AssertionError(f"connection ended: {msg.type} {ws.close_code}")


async def reply_to(ws: aiohttp.ClientWebSocketResponse, req_id: Any) -> dict[str, Any]:
    """Skip stream frames until the reply to request ``req_id``."""
    while True:
        msg = await next_json(ws)
        if "stream" not in msg and "e" not in msg and msg.get("id") == req_id:
            return dict(msg)


class BinanceBook:
    """A client's book, synced as Binance documents (futures rules), checked as it goes."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot_id = int(snapshot["lastUpdateId"])
        self.bids = {p: s for p, s in snapshot["bids"]}
        self.asks = {p: s for p, s in snapshot["asks"]}
        self.last_u: int | None = None
        self.applied = 0
        self.history: list[tuple[int, int, tuple[str, ...]]] = []  # (U, u, top after)
        self.tickers: list[dict[str, Any]] = []

    def on_frame(self, msg: dict[str, Any]) -> None:
        data = msg["data"]
        if msg["stream"].endswith("@bookTicker"):
            self.tickers.append(data)
            return
        if not msg["stream"].endswith("@depth@0ms") or data["u"] < self.snapshot_id:
            return
        if self.last_u is None:
            assert data["U"] <= self.snapshot_id <= data["u"] or data["pu"] == self.snapshot_id
        else:
            assert data["pu"] == self.last_u, "sequence gap"
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for price, size in levels:
                if float(size) == 0:
                    side.pop(price, None)
                else:
                    side[price] = size
        self.last_u = data["u"]
        self.applied += 1
        if self.tickers is not None:
            bid = max(self.bids, key=float)
            ask = min(self.asks, key=float)
            self.history.append((data["U"], data["u"], (bid, self.bids[bid], ask, self.asks[ask])))

    def compare_tickers(self) -> int:
        """Every bookTicker with id in [u of a diff, U of the next) must show that book."""
        compared = 0
        for tk in self.tickers:
            for (_, u, top), (next_first, _, _) in zip(
                self.history, self.history[1:], strict=False
            ):
                if u <= tk["u"] < next_first:
                    assert top == (tk["b"], tk["B"], tk["a"], tk["A"]), tk
                    compared += 1
        return compared

    def levels(self, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: float(kv[0]), reverse=True)[:depth]
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))[:depth]
        return [list(x) for x in bids], [list(x) for x in asks]


# ------------------------------------------------------------- Binance, aiohttp


async def test_rest_snapshot_and_diffs_rebuild_the_true_book(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    url = combined_url(emu, sym, "depth@0ms", "trade", "bookTicker")
    async with session.ws_connect(url, autoping=False) as ws:
        resp = await session.get(f"{emu.http_base(USDM)}/fapi/v1/depth?symbol={sym}&limit=1000")
        assert resp.status == 200
        assert int(resp.headers["X-MBX-USED-WEIGHT-1M"]) >= 20
        snapshot = await resp.json()
        assert list(snapshot) == ["lastUpdateId", "E", "T", "bids", "asks"]
        assert len(snapshot["bids"]) == len(snapshot["asks"]) == 1000
        book = BinanceBook(snapshot)
        target: dict[str, Any] | None = None
        while target is None or (book.last_u or 0) < target["last_update_id"]:
            book.on_frame(await next_json(ws))
            if target is None and book.applied >= 600:
                target = emu.book(USDM, sym, depth=200)
        assert book.last_u == target["last_update_id"]
        assert book.levels(200) == (target["bids"], target["asks"])
        assert book.compare_tickers() >= 10  # about 1 in 15 diffs has one


async def test_rest_depth_is_held_until_the_position_reaches_the_snapshot_line(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()  # its clock has not started: the book is not known yet
    url = f"{emu.http_base(USDM)}/fapi/v1/depth?symbol={sym}&limit=5"
    request = asyncio.ensure_future(session.get(url))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(request), timeout=0.3)
    async with session.ws_connect(combined_url(emu, sym, "depth@0ms", "trade")):
        resp = await request
        assert resp.status == 200
        # the recorded snapshot line's own id, or a later diff's
        assert (await resp.json())["lastUpdateId"] >= 4984028384061


async def test_frames_are_paced_on_exchange_time(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    arrivals: list[tuple[float, int]] = []
    async with session.ws_connect(combined_url(emu, sym, "depth@0ms", "trade")) as ws:
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            msg = await next_json(ws)
            if msg["stream"].endswith("@depth@0ms"):
                arrivals.append((time.monotonic(), msg["data"]["E"]))
    (w0, e0), (w1, e1) = arrivals[0], arrivals[-1]
    assert (e1 - e0) / 1000 / (w1 - w0) == pytest.approx(SPEED, rel=0.25)
    late = [(w - w0) - (e - e0) / 1000 / SPEED for w, e in arrivals]
    assert max(abs(x) for x in late) < 0.3, "a frame far from its exchange-time slot"


async def test_raw_streams_and_control_messages(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc().lower()
    async with session.ws_connect(f"{emu.ws_base(USDM)}/ws/{sym}@depth@0ms") as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": [f"{sym}@trade"], "id": 1})
        assert await reply_to(ws, 1) == {"result": None, "id": 1}
        frame = await next_json(ws)
        assert "stream" not in frame and frame["e"] in ("depthUpdate", "trade")
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 2})
        assert (await reply_to(ws, 2))["result"] == [f"{sym}@depth@0ms", f"{sym}@trade"]
        await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", True], "id": 3})
        assert await reply_to(ws, 3) == {"result": None, "id": 3}
        frame = await next_json(ws)
        assert frame["stream"] in (f"{sym}@depth@0ms", f"{sym}@trade")
        await ws.send_str("{not json")
        await ws.send_json({"method": "SUBSCRIBED", "params": [], "id": 4})
        await ws.send_json({"method": "SET_PROPERTY", "params": ["combined", 1], "id": 5})
        errors: list[dict[str, Any]] = []
        while len(errors) < 3:
            msg = await next_json(ws)
            if "error" in msg:
                errors.append(msg)
        assert [e["error"]["code"] for e in errors] == [3, 2, 1]
        assert [e["id"] for e in errors] == [None, 4, 5]


async def test_unknown_symbol_and_bad_limit_answer_like_binance(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    base = f"{emu.http_base(USDM)}/fapi/v1/depth"
    for query, code in (("symbol=NOPEUSDT", -1121), ("symbol=BTCUSDT&limit=7", -1130), ("", -1102)):
        resp = await session.get(f"{base}?{query}")
        assert resp.status == 400 and (await resp.json())["code"] == code
        assert "X-MBX-USED-WEIGHT-1M" in resp.headers


# ------------------------------------------------------------------- faults


async def test_disconnect_drops_the_socket_without_a_close_frame(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    url = combined_url(emu, sym, "depth@0ms", "trade")
    before = emu.market_stats(USDM)["connections_total"]
    async with session.ws_connect(url, autoping=False) as ws:
        await next_json(ws)
        assert emu.fault("disconnect", USDM, sym)["disconnected"] == 1
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR,
                            aiohttp.WSMsgType.CLOSE):
                break
        assert msg.type is not aiohttp.WSMsgType.CLOSE  # no close frame was sent
    async with session.ws_connect(url) as ws:  # the client reconnects: frames again
        assert (await next_json(ws))["stream"].startswith(sym.lower())
    assert emu.market_stats(USDM)["connections_total"] == before + 2


async def test_stall_sends_nothing_but_answers_pings(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    async with session.ws_connect(combined_url(emu, sym, "depth@0ms", "trade"),
                                  autoping=False) as ws:
        last_u, diffs = None, 0
        while diffs < 20:  # well past the snapshot line: the true book is known
            msg = await next_json(ws)
            if "pu" in msg["data"]:
                last_u, diffs = msg["data"]["u"], diffs + 1
        emu.fault("stall", USDM, sym)
        at_stall = emu.book(USDM, sym, depth=1)["last_update_id"]
        await ws.ping(b"are-you-there")
        pings = pongs = 0
        window_end = time.monotonic() + 1.2
        while (left := window_end - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)["data"]
                assert data.get("u", 0) <= at_stall, "a frame sent during the stall"
                last_u = data.get("u", last_u) if "pu" in data else last_u
            elif msg.type is aiohttp.WSMsgType.PING:
                pings += 1
                await ws.pong(msg.data)
            elif msg.type is aiohttp.WSMsgType.PONG:
                pongs += 1
                assert msg.data == b"are-you-there"
        assert pongs == 1 and pings >= 2  # the socket is alive both ways
        stats = emu.symbol_stats(USDM, sym)
        assert stats["stalled"] and stats["frames_withheld_stalled"] > 0
        assert emu.book(USDM, sym, depth=1)["last_update_id"] > at_stall  # the venue moved on
        emu.fault("resume", USDM, sym)
        while True:
            msg = await next_json(ws)
            if "pu" in msg["data"]:
                assert msg["data"]["pu"] != last_u  # what was not sent is lost: a gap
                break


async def test_dropped_frames_make_a_sequence_gap(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    async with session.ws_connect(combined_url(emu, sym, "depth@0ms", "trade")) as ws:
        diffs: list[dict[str, Any]] = []

        async def next_diff() -> dict[str, Any]:
            while "pu" not in (msg := await next_json(ws))["data"]:
                pass
            return dict(msg["data"])

        diffs.append(await next_diff())
        emu.fault("drop", USDM, sym, count=3)
        for _ in range(30):
            diffs.append(await next_diff())
    breaks = [i for i in range(1, len(diffs)) if diffs[i]["pu"] != diffs[i - 1]["u"]]
    assert len(breaks) == 1
    assert emu.symbol_stats(USDM, sym)["frames_dropped"] == 3


async def test_http_error_switch_answers_429_and_418_with_retry_after(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    url = f"{emu.http_base(USDM)}/fapi/v1/depth?symbol=NOPEUSDT"
    emu.fault("http_error", USDM, status=429, count=1, retry_after=3)
    resp = await session.get(url)
    assert resp.status == 429 and resp.headers["Retry-After"] == "3"
    assert (await resp.json())["code"] == -1003
    assert (await session.get(url)).status == 400  # only the next one
    emu.fault("http_error", USDM, status=418, seconds=30, retry_after=7)
    for _ in range(2):
        resp = await session.get(url)
        assert resp.status == 418 and resp.headers["Retry-After"] == "7"
        assert "banned until" in (await resp.json())["msg"]
    emu.clear(USDM)
    assert (await session.get(url)).status == 400


async def test_slow_snapshot_delays_the_rest_answer(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = fresh_btc()
    emu.start_clocks(USDM, sym)
    url = f"{emu.http_base(USDM)}/fapi/v1/depth?symbol={sym}&limit=5"
    assert (await session.get(url)).status == 200  # the book is known by now
    emu.fault("slow_snapshot", USDM, sym, delay=0.6)
    began = time.monotonic()
    resp = await session.get(url)
    assert resp.status == 200 and time.monotonic() - began >= 0.6
    emu.clear(USDM, sym)
    began = time.monotonic()
    await session.get(url)
    assert time.monotonic() - began < 0.5


async def test_refused_upgrades(emu: EmulatorProcess, session: aiohttp.ClientSession) -> None:
    emu.fault("refuse", BYBIT, count=1)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(emu.ws_base(BYBIT))
    assert refused.value.status == 503
    async with session.ws_connect(emu.ws_base(BYBIT)):
        pass


# ------------------------------------------------------------------- limits


async def test_too_many_messages_per_second_drop_the_connection(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    before = emu.market_stats(USDM)["violations"].get("messages_per_second", 0)
    async with session.ws_connect(emu.ws_base(USDM) + "/ws") as ws:
        for i in range(12):
            await ws.send_json({"method": "SUBSCRIBE", "params": [f"s{i}@trade"], "id": i})
        while (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == 1008
    stats = emu.market_stats(USDM)
    assert stats["violations"]["messages_per_second"] == before + 1
    assert stats["messages_per_second_max"] >= 11


async def test_stream_limit_per_connection(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    before = emu.market_stats(USDM)["violations"].get("streams_per_connection", 0)
    async with session.ws_connect(emu.ws_base(USDM) + "/ws/a@trade") as ws:
        names = [f"n{i}@trade" for i in range(200)]
        await ws.send_json({"method": "SUBSCRIBE", "params": names, "id": 1})
        assert (await reply_to(ws, 1))["error"]["code"] == 2
        await ws.send_json({"method": "SUBSCRIBE", "params": names[:199], "id": 2})
        assert await reply_to(ws, 2) == {"result": None, "id": 2}
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert len((await reply_to(ws, 3))["result"]) == 200
    stats = emu.market_stats(USDM)
    assert stats["violations"]["streams_per_connection"] == before + 1
    assert stats["streams_per_connection_max"] == 200


async def test_request_weight_and_connection_attempts_per_ip(
    spot_emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    url = f"{spot_emu.http_base('binance-spot')}/api/v3/depth?symbol=BTCUSDT&limit=5000"
    body = await (await session.get(url.replace("5000", "3"))).json()
    assert list(body) == ["lastUpdateId", "bids", "asks"] and len(body["bids"]) == 3
    used_before = -1
    for _ in range(60):  # 250 each: the 25th in a minute is over 6000
        resp = await session.get(url)
        used = int(resp.headers["X-MBX-USED-WEIGHT-1M"])
        if resp.status == 429:
            assert 0 < int(resp.headers["Retry-After"]) <= 60 and used > 6000
            assert (await resp.json())["code"] == -1003
            break
        assert resp.status == 200 and (used > used_before or used == 250)
        used_before = used
    else:
        raise AssertionError("the weight limit was never enforced")
    ws_url = spot_emu.ws_base("binance-spot") + "/ws"
    for _ in range(300):
        async with session.ws_connect(ws_url):
            pass
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(ws_url)
    assert refused.value.status == 429
    stats = spot_emu.market_stats("binance-spot")
    assert stats["violations"]["connection_attempts"] == 1
    assert stats["violations"]["request_weight"] >= 1 and stats["weight_per_minute_max"] > 6000


# ------------------------------------------------------------- Bybit, aiohttp


async def test_bybit_subscribe_snapshot_deltas_ping_and_resubscribe(
    emu: EmulatorProcess, session: aiohttp.ClientSession
) -> None:
    sym = next(_XRP)
    topic = f"orderbook.500.{sym}"
    async with session.ws_connect(emu.ws_base(BYBIT)) as ws:
        await ws.send_json({"op": "subscribe", "args": [topic], "req_id": "r1"})
        reply = await next_json(ws)
        assert reply == {"success": True, "ret_msg": "", "conn_id": reply["conn_id"],
                         "req_id": "r1", "op": "subscribe"}
        snapshot = await next_json(ws)
        assert (snapshot["topic"], snapshot["type"]) == (topic, "snapshot")
        assert set(snapshot) == {"topic", "type", "ts", "data", "cts"}
        book = {"b": dict(snapshot["data"]["b"]), "a": dict(snapshot["data"]["a"])}
        last_u = snapshot["data"]["u"]
        await apoll(lambda: emu.symbol_stats(BYBIT, sym)["ended"], what="end of recording")
        for _ in range(49):  # the recording's deltas, in order
            delta = await next_json(ws)
            assert delta["type"] == "delta" and delta["data"]["u"] == last_u + 1
            last_u = delta["data"]["u"]
            for side in "ba":
                for price, size in delta["data"][side]:
                    if float(size) == 0:
                        book[side].pop(price, None)
                    else:
                        book[side][price] = size
        truth = emu.book(BYBIT, sym)
        assert truth["last_update_id"] == last_u
        assert sorted(book["b"].items()) == sorted(map(tuple, truth["bids"]))
        assert sorted(book["a"].items()) == sorted(map(tuple, truth["asks"]))
        await ws.send_json({"op": "ping", "req_id": "p1"})
        pong = await next_json(ws)
        assert (pong["op"], pong["ret_msg"], pong["req_id"], pong["success"]) == (
            "ping", "pong", "p1", True)
        await ws.send_json({"op": "subscribe", "args": [topic]})  # re-sync: a fresh snapshot
        assert (await next_json(ws))["success"]
        fresh = await next_json(ws)
        assert fresh["type"] == "snapshot" and fresh["data"]["u"] == last_u
        assert fresh["data"]["b"] == truth["bids"][:500]
        await ws.send_json({"op": "subscribe", "args": [f"orderbook.50.{sym}"]})
        assert (await next_json(ws))["success"]
        shallow = await next_json(ws)
        assert shallow["topic"] == f"orderbook.50.{sym}"
        assert len(shallow["data"]["b"]) == len(shallow["data"]["a"]) == 50
    assert emu.market_stats(BYBIT)["depth_mismatch"] >= 1


async def test_bybit_spot_args_limit(emu: EmulatorProcess, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(emu.ws_base("bybit-spot")) as ws:
        args = [f"publicTrade.S{i}USDT" for i in range(11)]
        await ws.send_json({"op": "subscribe", "args": args, "req_id": "many"})
        reply = await next_json(ws)
        assert (reply["success"], reply["ret_msg"], reply["req_id"]) == (False, "args size >10",
                                                                        "many")
    assert emu.market_stats("bybit-spot")["violations"]["args_per_request"] == 1


# --------------------------------------------------------- Nautilus's clients


def nautilus_http(emu: EmulatorProcess, clock: LiveClock) -> BinanceFuturesMarketHttpAPI:
    """Public Binance HTTP, as ingest builds it: no key, no key header."""
    client = BinanceHttpClient(clock=clock, api_key="", api_secret="",
                               base_url=emu.http_base(USDM))
    client._headers.pop("X-MBX-APIKEY", None)
    return BinanceFuturesMarketHttpAPI(client, BinanceAccountType.USDT_FUTURES)


async def test_nautilus_binance_clients_sync_a_book_and_survive_a_disconnect(
    emu: EmulatorProcess,
) -> None:
    sym = fresh_btc()
    clock = LiveClock()
    frames: list[dict[str, Any]] = []
    reconnects: list[float] = []

    async def on_reconnect() -> None:
        reconnects.append(time.monotonic())

    ws = BinanceWebSocketClient(
        clock, emu.ws_base(USDM), lambda raw: frames.append(json.loads(raw)),
        on_reconnect, asyncio.get_running_loop(),
    )
    api = nautilus_http(emu, clock)
    instrument = InstrumentId.from_str(f"{sym}-PERP.BINANCE")
    try:
        # /stream?streams=<sym>@depth@0ms, then a SUBSCRIBE for the trades: the clock starts
        await ws.subscribe_diff_book_depth(sym, speed=0)
        await ws.subscribe_trades(sym)
        snapshot = await api.request_order_book_snapshot(
            instrument_id=instrument, ts_init=clock.timestamp_ns(), limit=1000
        )
        assert snapshot.deltas[0].action == BookAction.CLEAR
        bids = [[str(d.order.price), str(d.order.size)] for d in snapshot.deltas[1:]
                if d.order.side == OrderSide.BUY]
        asks = [[str(d.order.price), str(d.order.size)] for d in snapshot.deltas[1:]
                if d.order.side == OrderSide.SELL]
        book = BinanceBook({"lastUpdateId": snapshot.sequence, "bids": bids, "asks": asks})
        target: dict[str, Any] | None = None
        seen = 0
        while target is None or (book.last_u or 0) < target["last_update_id"]:
            await apoll(lambda n=seen: len(frames) > n, what="a frame")  # type: ignore[misc]
            msg = frames[seen]
            seen += 1
            if "stream" in msg:
                book.on_frame(msg)
            if target is None and book.applied >= 50:
                target = emu.book(USDM, sym, depth=100)
        assert book.last_u == target["last_update_id"]
        assert book.levels(100) == (target["bids"], target["asks"])

        assert emu.fault("disconnect", USDM, sym)["disconnected"] == 1
        await apoll(lambda: reconnects, timeout=15, what="Nautilus to reconnect")
        count = len(frames)
        await apoll(lambda: len(frames) > count + 10, what="frames after the reconnect")
        market = emu.market_stats(USDM)
        assert market["symbols"][sym]["subscribers"] == 1

        emu.fault("http_error", USDM, status=429, count=1, retry_after=2)
        with pytest.raises(BinanceClientError) as err:
            await api.request_order_book_snapshot(
                instrument_id=instrument, ts_init=clock.timestamp_ns(), limit=5
            )
        # (Nautilus 1.221's HttpResponse carries no headers: Retry-After is checked with
        # aiohttp in test_http_error_switch_answers_429_and_418_with_retry_after.)
        assert err.value.status == 429 and err.value.message["code"] == -1003
    finally:
        await ws.disconnect()


async def test_nautilus_bybit_client_gets_snapshot_and_deltas(emu: EmulatorProcess) -> None:
    sym = next(_XRP)
    raw: list[bytes] = []
    client = BybitWebSocketClient(
        clock=LiveClock(), base_url=emu.ws_base(BYBIT), handler=raw.append,
        handler_reconnect=None, api_key="", api_secret="", loop=asyncio.get_running_loop(),
    )
    await client.connect()
    try:
        await client.subscribe_order_book(sym, depth=500)
        await apoll(lambda: len(raw) >= 51, what="reply, snapshot and 49 deltas")
    finally:
        await client.disconnect()
    assert json.loads(raw[0])["success"] is True
    decoder = decoder_ws_orderbook()
    msgs = [decoder.decode(r) for r in raw[1:]]
    assert [m.type for m in msgs] == ["snapshot"] + ["delta"] * 49
    book: dict[str, dict[str, str]] = {"b": {}, "a": {}}
    for m in msgs:
        for side, levels in (("b", m.data.b), ("a", m.data.a)):
            for price, size in levels:
                if float(size) == 0:
                    book[side].pop(price, None)
                else:
                    book[side][price] = size
    truth = emu.book(BYBIT, sym)
    assert msgs[-1].data.u == truth["last_update_id"]
    assert sorted(book["b"].items()) == sorted(map(tuple, truth["bids"]))


# ---------------------------------------------------------------------- CLI


def test_cli_prints_the_urls_and_stops_cleanly_on_sigterm() -> None:
    with EmulatorProcess([BYBIT_FILE], copies=["bybit-linear:XRPUSDT=2"]) as process:
        urls = process.venue_urls
        assert urls == (f"bybit-linear={process.http_base(BYBIT)}|{process.ws_base(BYBIT)}")
        assert process.stop() == 0
        log = process.log_text()
    assert f"C8_INGEST_VENUE_URLS={urls}" in log
    assert "C8_INGEST_PRECISIONS=XRP001USDT=4:0,XRP002USDT=4:0" in log
    bad = EmulatorProcess([BYBIT_FILE], copies=["binance-usdm:BTCUSDT=1"])
    with pytest.raises(EmulatorError, match="not loaded"):
        bad.start()
    bad.close()
