"""Venue messages -> Nautilus data, using NautilusTrader's own venue schemas.

Each line is decoded with the msgspec structs of Nautilus's Binance and Bybit adapters
(the schemas its live clients use). The numbers are then converted once, exactly, to the
wire's scaled ints, and the ``OrderBookDeltas`` / ``TradeTick`` are built from those ints
with Nautilus's raw constructors (``fastbuild.py``; the adapters' ``parse_to_*`` methods
go through ``Price.from_str`` per level, which dominated ingest's CPU time).

What Nautilus's objects do not carry travels beside them in the message records below:
the exact ints, the venue's sequence ids ``U``/``u``/``pu`` (OrderBookDeltas keep only
``sequence``), the liquidation flag of futures trades (``X``), and the receive time.

``pu`` is normalised here: Binance futures ``pu``; Binance spot ``U - 1``; Bybit
``u - 1``. With that, every venue's chain rule is the same: ``pu == previous u``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceDataMsgWrapper,
    BinanceDepth,
    BinanceOrderBookData,
    BinanceQuoteMsg,
)
from nautilus_trader.adapters.binance.futures.schemas.market import BinanceFuturesTradeData
from nautilus_trader.adapters.binance.spot.schemas.market import BinanceSpotTradeMsg
from nautilus_trader.adapters.bybit.schemas.ws import BybitWsOrderbookDepthMsg, BybitWsTradeMsg
from nautilus_trader.model.data import OrderBookDeltas, TradeTick
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest.fastbuild import (
    Level,
    LevelScaler,
    ValueRejection,
    scaled,
    trade_tick,
)
from services.ingest.feeds import Feed
from services.ingest.recorded import RawLine

_MS = 1_000_000


class FuturesTradeData(BinanceFuturesTradeData, frozen=True):
    """Nautilus's futures trade schema plus ``X`` (execution type), which it drops.

    ``X`` != ``MARKET`` (e.g. ``INSURANCE_FUND``) marks a liquidation fill.
    """

    X: str = "MARKET"


class DepthDiffData(BinanceOrderBookData, frozen=True):
    """Nautilus's diff schema with each level read as a ``(price, size)`` pair.

    The venue sends ``["price", "size"]`` arrays; Nautilus reads each into a small
    struct, which costs more to build and to read than a tuple (ingest's hottest path).
    """

    b: list[tuple[str, str]]  # type: ignore[assignment]
    a: list[tuple[str, str]]  # type: ignore[assignment]


class DepthDiffMsg(msgspec.Struct, frozen=True):
    stream: str
    data: DepthDiffData


class FuturesTradeMsg(msgspec.Struct, frozen=True):
    stream: str
    data: FuturesTradeData


class BybitTopic(msgspec.Struct):
    """Just the topic of a Bybit v5 message, to pick its schema."""

    topic: str


class ParseRejection(Exception):
    """A line that cannot be used; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class BookMsg:
    """One venue book message: a full snapshot or one diff, as Nautilus deltas."""

    snapshot: bool
    U: int
    u: int
    pu: int  # normalised: the update id this message follows
    event_ns: int
    recv_ns: int
    #: None for a diff that changes no level (it still advances the sequence).
    deltas: OrderBookDeltas | None
    #: The same levels as exact scaled ints (None: only ``deltas`` is known, e.g. a
    #: snapshot that Nautilus's REST client built).
    bids: list[Level] | None = None
    asks: list[Level] | None = None
    #: A snapshot fetched over REST (Binance live): unlike a WebSocket message it does
    #: not show that the live feed is flowing.
    rest: bool = False


@dataclass(slots=True)
class TradeMsg:
    tick: TradeTick
    liq: bool
    event_ns: int
    recv_ns: int
    #: Price and size as exact scaled ints (None: read them from ``tick``).
    px: int | None = None
    sz: int | None = None


@dataclass(slots=True)
class QuoteMsg:
    """The venue's best bid/ask (Binance bookTicker): used to verify the rebuilt book."""

    u: int
    bid_px: str
    bid_sz: str
    ask_px: str
    ask_sz: str
    event_ns: int
    recv_ns: int


VenueMsg = BookMsg | TradeMsg | QuoteMsg

_STREAM_HEAD = b'{"stream":"'
_STREAM_AT = len(_STREAM_HEAD)
_WRAPPER = msgspec.json.Decoder(BinanceDataMsgWrapper)
_DEPTH_SNAPSHOT = msgspec.json.Decoder(BinanceDepth)
_DEPTH_DIFF = msgspec.json.Decoder(DepthDiffMsg)
_QUOTE = msgspec.json.Decoder(BinanceQuoteMsg)
_FUTURES_TRADE = msgspec.json.Decoder(FuturesTradeMsg)
_SPOT_TRADE = msgspec.json.Decoder(BinanceSpotTradeMsg)
_BYBIT_BOOK = msgspec.json.Decoder(BybitWsOrderbookDepthMsg)
_BYBIT_TRADES = msgspec.json.Decoder(BybitWsTradeMsg)
_BYBIT_TOPIC = msgspec.json.Decoder(BybitTopic)


class LineParser:
    """Parses one feed's lines, in order (it keeps the feed's exchange-time watermark)."""

    def __init__(
        self, feed: Feed, instrument_id: InstrumentId | None = None, quotes: bool = True
    ) -> None:
        """``quotes=False``: bookTicker lines are only counted (``quotes_skipped``), not
        parsed; the replay has no use for them (live mode does not subscribe to them)."""
        self.feed = feed
        self.instrument_id = instrument_id or InstrumentId.from_str(feed.instrument_id)
        self._pp = feed.price_precision
        self._sp = feed.size_precision
        self._levels = LevelScaler(self._pp, self._sp)
        self._stream_prefix = feed.raw_symbol.lower() + "@"
        self._quotes = quotes
        self._bybit = feed.venue == "BYBIT"
        self.quotes_skipped = 0
        #: Newest exchange time seen: the event time of a message that carries none
        #: (the Binance spot REST snapshot), so it sorts where it arrived.
        self.watermark_ns = 0

    def parse(self, line: RawLine) -> VenueMsg:
        """Parse a line holding one message, or raise ``ParseRejection``."""
        msgs = self.parse_all(line)
        if len(msgs) != 1:
            raise ParseRejection("malformed", f"{len(msgs)} messages in one line")
        return msgs[0]

    def parse_all(self, line: RawLine) -> list[VenueMsg]:
        """Parse one line (a Bybit trade message holds several trades) or raise."""
        try:
            if not self._bybit:  # one message per line: the common case, kept short
                msg = self._parse_binance(line)
                if msg is None:
                    return []
                if msg.event_ns > self.watermark_ns:
                    self.watermark_ns = msg.event_ns
                return [msg]
            msgs = self._parse_bybit(line)
        except ParseRejection:
            raise
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseRejection("malformed", str(exc)) from exc
        except ValueRejection as exc:
            raise ParseRejection(exc.reason, str(exc)) from exc
        except (ValueError, TypeError, LookupError, ArithmeticError) as exc:
            # Nautilus's Price/Quantity constructors reject negative, NaN or garbled numbers.
            raise ParseRejection("bad_value", repr(exc)) from exc
        for msg in msgs:
            self.watermark_ns = max(self.watermark_ns, msg.event_ns)
        return msgs

    # -- Binance ------------------------------------------------------------------------

    def _parse_binance(self, line: RawLine) -> VenueMsg | None:
        """One combined-stream message (None: a bookTicker with ``quotes=False``)."""
        recv, raw, _ = line
        if recv is None:
            raise ParseRejection("framing", f"line {line.lineno}: no receive timestamp")
        # The recorder writes the stream name first: read it without decoding the line
        # twice (the message's own schema still checks all of it, ``stream`` included).
        end = raw.find(b'"', _STREAM_AT) if raw.startswith(_STREAM_HEAD) else -1
        stream = raw[_STREAM_AT:end].decode() if end > 0 else _WRAPPER.decode(raw).stream
        if stream is None:
            return self._binance_snapshot(line.raw, recv)
        if not stream.startswith(self._stream_prefix):
            raise ParseRejection("unknown_stream", stream)
        channel = stream[len(self._stream_prefix) :]
        if channel.startswith("depth"):
            return self._binance_diff(line.raw, recv)
        if channel == "trade":
            return self._binance_trade(line.raw, recv)
        if channel == "bookTicker":
            if not self._quotes:
                self.quotes_skipped += 1
                return None
            quote = _QUOTE.decode(line.raw).data
            self._check_symbol(quote.s)
            event = quote.T * _MS if quote.T else self.watermark_ns or recv
            return QuoteMsg(quote.u, quote.b, quote.B, quote.a, quote.A, event, recv)
        raise ParseRejection("unknown_stream", stream)

    def _binance_snapshot(self, raw: bytes, recv: int) -> BookMsg:
        snap = _DEPTH_SNAPSHOT.decode(raw)
        if snap.symbol is not None:
            self._check_symbol(snap.symbol)
        stamp = snap.T or snap.E  # futures only; the spot snapshot has no timestamp
        event = stamp * _MS if stamp else self.watermark_ns or recv
        last = snap.lastUpdateId
        bids, asks, deltas = self._levels.book(
            self.instrument_id, snap.bids, snap.asks, last, event, recv, True
        )
        return BookMsg(True, last, last, last, event, recv, deltas, bids, asks)

    def _binance_diff(self, raw: bytes, recv: int) -> BookMsg:
        data = _DEPTH_DIFF.decode(raw).data
        self._check_symbol(data.s)
        if data.u < data.U:
            raise ParseRejection("bad_sequence", f"U {data.U} > u {data.u}")
        if self.feed.is_futures:
            if data.pu is None:
                raise ParseRejection("bad_sequence", "futures diff without pu")
            pu = data.pu
        else:
            pu = data.U - 1
        event = (data.T or data.E) * _MS
        bids, asks, deltas = self._levels.book(
            self.instrument_id, data.b, data.a, data.u, event, recv, False
        )
        return BookMsg(False, data.U, data.u, pu, event, recv, deltas, bids, asks)

    def _binance_trade(self, raw: bytes, recv: int) -> TradeMsg:
        if self.feed.is_futures:
            fut = _FUTURES_TRADE.decode(raw).data
            self._check_symbol(fut.s)
            return self._trade_msg(fut.p, fut.q, not fut.m, str(fut.t), fut.T, recv, fut.X)
        spot = _SPOT_TRADE.decode(raw).data
        self._check_symbol(spot.s)
        return self._trade_msg(spot.p, spot.q, not spot.m, str(spot.t), spot.T, recv)

    def _trade_msg(
        self,
        price: str,
        size: str,
        buyer_aggressor: bool,
        trade_id: str,
        time_ms: int,
        recv: int,
        execution: str = "MARKET",
    ) -> TradeMsg:
        """``m`` (buyer is maker) true means the taker sold; ``X != MARKET``: liquidation."""
        px, sz = scaled(price, self._pp), scaled(size, self._sp)
        event = time_ms * _MS
        tick = trade_tick(
            self.instrument_id, px, sz, self._pp, self._sp, buyer_aggressor, trade_id, event, recv
        )
        return TradeMsg(tick, execution != "MARKET", event, recv, px, sz)

    # -- Bybit --------------------------------------------------------------------------

    def _parse_bybit(self, line: RawLine) -> list[VenueMsg]:
        topic = _BYBIT_TOPIC.decode(line.raw).topic
        if topic.startswith("publicTrade."):
            return list(self._bybit_trades(line))
        if not topic.startswith("orderbook."):
            raise ParseRejection("unknown_stream", topic)
        return [self._bybit_book(line)]

    def _bybit_trades(self, line: RawLine) -> list[TradeMsg]:
        msg = _BYBIT_TRADES.decode(line.raw)
        out: list[TradeMsg] = []
        for trade in msg.data:
            self._check_symbol(trade.s)
            recv = line.recv_ns if line.recv_ns is not None else trade.T * _MS
            # Bybit's public trades carry no liquidation flag (that is another topic).
            out.append(self._trade_msg(trade.p, trade.v, trade.S != "Sell", trade.i, trade.T, recv))
        return out

    def _bybit_book(self, line: RawLine) -> BookMsg:
        msg = _BYBIT_BOOK.decode(line.raw)
        self._check_symbol(msg.data.s)
        if msg.type not in ("snapshot", "delta"):
            raise ParseRejection("unknown_stream", f"{msg.topic} type {msg.type}")
        event = msg.ts * _MS
        recv = line.recv_ns if line.recv_ns is not None else event
        # Bybit: u == 1 is a fresh snapshot after a service restart, whatever ``type`` says.
        snapshot = msg.type == "snapshot" or msg.data.u == 1
        # Nautilus's Bybit adapter uses the cross sequence ``seq`` as the deltas' sequence.
        bids, asks, deltas = self._levels.book(
            self.instrument_id, msg.data.b, msg.data.a, msg.data.seq, event, recv, snapshot
        )
        u = msg.data.u
        return BookMsg(snapshot, u, u, u - 1, event, recv, deltas, bids, asks)

    def _check_symbol(self, symbol: Any) -> None:
        if symbol != self.feed.raw_symbol:
            raise ParseRejection("wrong_symbol", f"{symbol!r} in the {self.feed.raw_symbol} feed")
