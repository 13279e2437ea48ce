"""Helpers for the live-mode tests: a simulated venue (shadow book), polling.

The venue is a *shadow* book: every recorded frame is applied to a plain
``BookSequencer`` (whatever ingest loses, the venue did not). When ingest asks for a
fresh book -- Binance: the REST depth snapshot, Bybit: unsubscribe + subscribe -- it
gets the shadow book as the venue would send it at that moment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog
from nautilus_trader.adapters.binance.common.schemas.market import BinanceDepth
from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest.convert import book_update
from services.ingest.feeds import Feed
from services.ingest.live import LiveClientClasses, build_live_node
from services.ingest.parsing import BookMsg, LineParser, ParseRejection
from services.ingest.recorded import RawLine
from services.ingest.sequencer import BookSequencer, Rule
from services.ingest.settings import Settings
from services.ingest.side_channel import SideChannel
from services.ingest.writer import StreamWriter
from shared.wire import DeltaPayload, SnapPayload, StatusPayload
from tests.support.polling import apoll


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
        u = book_u(self.book)
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


def nth_book_frame(frames: list[bytes], nth: int) -> bytes:
    """The ``nth`` Binance depth diff frame (1-based)."""
    diffs = [raw for raw in frames if b"@depth" in raw[:40]]
    return diffs[nth - 1]


def consumer_book(entries: list[Any]) -> tuple[dict[int, int], dict[int, int]]:
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


def book_u(book: BookSequencer) -> int | None:
    """The update id a book is valid at (a bare snapshot has applied no diff yet)."""
    return book.last_u if book.last_u is not None else book.snapshot_u


until = apoll


@dataclass
class LiveRun:
    """A running live-mode ingest node with its writer and a Redis client for reading."""

    node: Any
    actor: Any
    side: SideChannel
    writer: StreamWriter
    client: aioredis.Redis


@asynccontextmanager
async def running_live_node(
    settings: Settings, feeds: list[Feed], classes: LiveClientClasses
) -> AsyncIterator[LiveRun]:
    """Build and run the live node (the clients given by ``classes`` feed it recorded
    frames); on exit stop it, drain the writer and close the client."""
    client = aioredis.Redis.from_url(settings.redis_url)
    writer = StreamWriter(client, maxlen=100_000)
    writer_task = asyncio.create_task(writer.run())
    side = SideChannel()
    node, actor = build_live_node(
        settings, feeds, side, writer, structlog.get_logger(), classes=classes
    )
    node_task = asyncio.create_task(node.run_async())
    try:
        yield LiveRun(node, actor, side, writer, client)
    finally:
        await node.stop_async()
        node_task.cancel()
        await asyncio.gather(node_task, return_exceptions=True)
        await writer.close()
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        await client.aclose()
