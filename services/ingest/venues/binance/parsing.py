"""Binance lines -> records: combined-stream frames and REST depth snapshot bodies.

Decoded with NautilusTrader's Binance schemas. ``pu`` is normalised: futures ``pu``,
spot ``U - 1``. Event time: a diff's transaction time ``T`` (else ``E``), a trade's
``T``; a futures REST snapshot's ``T``/``E``; the spot snapshot carries none and takes
the feed's watermark (the newest exchange time seen), else its receive time.

Derivatives (futures, live): ``<sym>@markPrice@1s`` (event time ``E``; mark ``p``, index
``i``, funding rate ``r``, next funding time ``T``), ``<sym>@forceOrder`` (event time:
the order's trade time ``o.T``; ``o.S=SELL`` closes a long position, ``BUY`` a short;
size ``o.z`` (filled), else ``o.q``; price ``o.ap`` (average fill), else ``o.p``) and the
REST ``openInterest`` body (``openInterest``, event time ``time``).
"""

from __future__ import annotations

import msgspec
from nautilus_trader.adapters.binance.common.schemas.market import (
    BinanceDataMsgWrapper,
    BinanceDepth,
    BinanceOrderBookData,
    BinanceQuoteMsg,
)
from nautilus_trader.adapters.binance.futures.schemas.market import BinanceFuturesTradeData
from nautilus_trader.adapters.binance.spot.schemas.market import BinanceSpotTradeMsg

from services.ingest.feeds import Feed
from services.ingest.parsing import MS, LineParser, Parsed, ParseRejection
from services.ingest.recorded import RawLine
from services.ingest.records import (
    BookUpdate,
    Liquidation,
    MarkUpdate,
    OpenInterest,
    Quote,
    Source,
)


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


class MarkPriceData(msgspec.Struct, frozen=True):
    """``<sym>@markPrice[@1s]`` (USDⓈ-M and COIN-M "Mark Price Stream"); COIN-M sends
    no funding fields for delivery contracts, so they are optional."""

    e: str
    E: int
    s: str
    p: str
    i: str | None = None
    r: str | None = None
    T: int | None = None


class MarkPriceMsg(msgspec.Struct, frozen=True):
    stream: str
    data: MarkPriceData


class ForceOrder(msgspec.Struct, frozen=True):
    """The ``o`` object of ``<sym>@forceOrder`` ("Liquidation Order Streams")."""

    s: str
    S: str
    q: str
    p: str
    T: int
    ap: str | None = None
    z: str | None = None
    X: str | None = None


class ForceOrderData(msgspec.Struct, frozen=True):
    e: str
    E: int
    o: ForceOrder


class ForceOrderMsg(msgspec.Struct, frozen=True):
    stream: str
    data: ForceOrderData


class OpenInterestBody(msgspec.Struct, frozen=True):
    """``GET /fapi/v1/openInterest`` / ``/dapi/v1/openInterest``."""

    openInterest: str
    symbol: str
    time: int


class FuturesTradeMsg(msgspec.Struct, frozen=True):
    stream: str
    data: FuturesTradeData


_STREAM_HEAD = b'{"stream":"'
_STREAM_AT = len(_STREAM_HEAD)
_WRAPPER = msgspec.json.Decoder(BinanceDataMsgWrapper)
_DEPTH_SNAPSHOT = msgspec.json.Decoder(BinanceDepth)
_DEPTH_DIFF = msgspec.json.Decoder(DepthDiffMsg)
_QUOTE = msgspec.json.Decoder(BinanceQuoteMsg)
_FUTURES_TRADE = msgspec.json.Decoder(FuturesTradeMsg)
_SPOT_TRADE = msgspec.json.Decoder(BinanceSpotTradeMsg)
_MARK = msgspec.json.Decoder(MarkPriceMsg)
_FORCE_ORDER = msgspec.json.Decoder(ForceOrderMsg)
_OPEN_INTEREST = msgspec.json.Decoder(OpenInterestBody)
#: forceOrder ``S`` (the liquidation order's side) -> the side of the position it closes.
LIQUIDATED_SIDE = {"SELL": "long", "BUY": "short"}


class BinanceParser(LineParser):
    """One Binance feed: ``<sym>@depth@…``, ``<sym>@trade``, ``<sym>@bookTicker`` frames
    and the REST ``depth`` body (a line without ``stream``)."""

    def __init__(self, feed: Feed, quotes: bool = True) -> None:
        super().__init__(feed, quotes)
        self._stream_prefix = self.feed.raw_symbol.lower() + "@"
        self._futures = self.feed.is_futures

    def _parse(self, line: RawLine) -> list[Parsed]:
        recv, raw, _ = line
        if recv is None:
            raise ParseRejection("framing", f"line {line.lineno}: no receive timestamp")
        # The venue (and the recorder) writes the stream name first: read it without
        # decoding the line twice (the message's own schema still checks all of it).
        end = raw.find(b'"', _STREAM_AT) if raw.startswith(_STREAM_HEAD) else -1
        stream = raw[_STREAM_AT:end].decode() if end > 0 else _WRAPPER.decode(raw).stream
        if stream is None:
            return [self.snapshot(raw, recv)]
        if not stream.startswith(self._stream_prefix):
            raise ParseRejection("unknown_stream", stream)
        channel = stream[len(self._stream_prefix) :]
        if channel.startswith("depth"):
            return [self._diff(raw, recv)]
        if channel == "trade":
            return [self._trade(raw, recv)]
        if self._futures and channel.startswith("markPrice"):
            return [self._mark(raw, recv)]
        if self._futures and channel == "forceOrder":
            return [self._force_order(raw, recv)]
        if channel == "bookTicker":
            if not self.quotes:
                self.quotes_skipped += 1
                return []
            quote = _QUOTE.decode(raw).data
            self.check_symbol(quote.s)
            event = quote.T * MS if quote.T else self.watermark_ns or recv
            return [Quote(quote.u, quote.b, quote.B, quote.a, quote.A, event, recv)]
        raise ParseRejection("unknown_stream", stream)

    def snapshot(self, raw: bytes, recv: int, source: Source = "stream") -> BookUpdate:
        """A REST ``depth`` body (recorded as a line, or fetched live: ``source="rest"``)."""
        snap = _DEPTH_SNAPSHOT.decode(raw)
        if snap.symbol is not None:
            self.check_symbol(snap.symbol)
        stamp = snap.T or snap.E  # futures only; the spot snapshot has no timestamp
        event = stamp * MS if stamp else self.watermark_ns or recv
        last = snap.lastUpdateId
        levels = self.levels.levels
        return BookUpdate(
            True, last, last, last, levels(snap.bids), levels(snap.asks), event, recv, source
        )

    def _mark(self, raw: bytes, recv: int) -> MarkUpdate:
        data = _MARK.decode(raw).data
        self.check_symbol(data.s)
        mark = self.decimal(data.p, "mark price")
        index = self.decimal(data.i, "index price")
        # Funding can be negative; COIN-M delivery contracts send "" (no funding).
        funding = self.decimal(data.r, "funding rate", positive=False) if data.r else None
        nft = data.T if data.T else None
        return MarkUpdate(mark, index, funding, nft, data.E * MS, recv)

    def _force_order(self, raw: bytes, recv: int) -> Liquidation:
        order = _FORCE_ORDER.decode(raw).data.o
        self.check_symbol(order.s)
        side = LIQUIDATED_SIDE.get(order.S)
        if side is None:
            raise ParseRejection("bad_value", f"forceOrder side {order.S!r}")
        px = self.decimal(order.ap if order.ap and float(order.ap) > 0 else order.p, "price")
        sz = self.decimal(order.z if order.z and float(order.z) > 0 else order.q, "size")
        assert px is not None and sz is not None
        return Liquidation(side, px, sz, order.T * MS, recv)  # type: ignore[arg-type]

    def open_interest(self, raw: bytes, recv: int) -> OpenInterest:
        """A REST ``openInterest`` body (live: polled)."""
        try:
            body = _OPEN_INTEREST.decode(raw)
            self.check_symbol(body.symbol)
            oi = self.decimal(body.openInterest, "open interest", positive=False)
        except ParseRejection:
            raise
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseRejection("malformed", str(exc)) from exc
        except ValueError as exc:
            raise ParseRejection("bad_value", repr(exc)) from exc
        assert oi is not None
        if oi < 0:
            raise ParseRejection("bad_value", f"open interest {body.openInterest!r}")
        return OpenInterest(oi, None, body.time * MS, recv)

    def _diff(self, raw: bytes, recv: int) -> BookUpdate:
        data = _DEPTH_DIFF.decode(raw).data
        self.check_symbol(data.s)
        if data.u < data.U:
            raise ParseRejection("bad_sequence", f"U {data.U} > u {data.u}")
        if self._futures:
            if data.pu is None:
                raise ParseRejection("bad_sequence", "futures diff without pu")
            pu = data.pu
        else:
            pu = data.U - 1
        event = (data.T or data.E) * MS
        levels = self.levels.levels
        return BookUpdate(False, data.U, data.u, pu, levels(data.b), levels(data.a), event, recv)

    def _trade(self, raw: bytes, recv: int) -> Parsed:
        """``m`` (buyer is maker) true means the taker sold; ``X != MARKET``: liquidation."""
        if self._futures:
            fut = _FUTURES_TRADE.decode(raw).data
            self.check_symbol(fut.s)
            return self.trade(str(fut.t), fut.p, fut.q, not fut.m, fut.T, recv, fut.X != "MARKET")
        spot = _SPOT_TRADE.decode(raw).data
        self.check_symbol(spot.s)
        return self.trade(str(spot.t), spot.p, spot.q, not spot.m, spot.T, recv)
