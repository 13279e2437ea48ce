"""Bybit v5 public WebSocket messages -> records (``orderbook.N.SYM``, ``publicTrade.SYM``).

Decoded with NautilusTrader's Bybit schemas. Bybit has one update id per book message,
so ``U = u`` and ``pu = u - 1``; ``u == 1`` is a fresh snapshot after a Bybit service
restart, whatever ``type`` says. Event time: the message's ``ts``. Recorded Bybit files
have no receive time: it is then the event time.

Derivatives (linear, live): ``tickers.SYM`` (a ``snapshot``, then ``delta``s holding
only the fields that changed; event time ``ts``): ``markPrice``, ``indexPrice``,
``fundingRate``, ``nextFundingTime`` and ``openInterest`` / ``openInterestValue``;
``allLiquidation.SYM`` (and the older ``liquidation.SYM``): each item's ``T`` is its
event time; ``S`` is the side of the liquidated *position* (``Buy``: a long was
liquidated, Bybit v5 docs), ``v`` the size, ``p`` the price.
"""

from __future__ import annotations

import msgspec
from nautilus_trader.adapters.bybit.schemas.ws import BybitWsOrderbookDepthMsg, BybitWsTradeMsg

from services.ingest.parsing import MS, LineParser, Parsed, ParseRejection
from services.ingest.recorded import RawLine
from services.ingest.records import BookUpdate, Liquidation, MarkUpdate, OpenInterest


class TickerData(msgspec.Struct):
    """The derivatives fields of a linear ``tickers`` message (all optional: deltas)."""

    symbol: str
    markPrice: str | None = None
    indexPrice: str | None = None
    fundingRate: str | None = None
    nextFundingTime: str | None = None
    openInterest: str | None = None
    openInterestValue: str | None = None


class TickerMsg(msgspec.Struct):
    topic: str
    type: str
    ts: int
    data: TickerData


class AllLiquidationItem(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str


class AllLiquidationMsg(msgspec.Struct):
    topic: str
    ts: int
    data: list[AllLiquidationItem]


class LiquidationItem(msgspec.Struct):
    updatedTime: int
    symbol: str
    side: str
    size: str
    price: str


class LiquidationMsg(msgspec.Struct):
    topic: str
    ts: int
    data: LiquidationItem


#: Bybit liquidation ``S`` (the liquidated position's side) -> ``long`` / ``short``.
LIQUIDATED_SIDE = {"Buy": "long", "Sell": "short"}


class BybitTopic(msgspec.Struct):
    """Just the topic of a Bybit v5 message, to pick its schema."""

    topic: str


_BOOK = msgspec.json.Decoder(BybitWsOrderbookDepthMsg)
_TRADES = msgspec.json.Decoder(BybitWsTradeMsg)
_TOPIC = msgspec.json.Decoder(BybitTopic)
_TICKER = msgspec.json.Decoder(TickerMsg)
_ALL_LIQ = msgspec.json.Decoder(AllLiquidationMsg)
_LIQ = msgspec.json.Decoder(LiquidationMsg)


class BybitParser(LineParser):
    """One Bybit feed's book and trade messages."""

    def _parse(self, line: RawLine) -> list[Parsed]:
        topic = _TOPIC.decode(line.raw).topic
        if topic.startswith("publicTrade."):
            return self._trades(line)
        if self.feed.market == "linear":
            if topic.startswith("tickers."):
                return self._ticker(line)
            if topic.startswith("allLiquidation."):
                return self._all_liquidations(line)
            if topic.startswith("liquidation."):
                return self._liquidation(line)
        if not topic.startswith("orderbook."):
            raise ParseRejection("unknown_stream", topic)
        return [self._book(line)]

    def _trades(self, line: RawLine) -> list[Parsed]:
        msg = _TRADES.decode(line.raw)
        out: list[Parsed] = []
        for trade in msg.data:
            self.check_symbol(trade.s)
            recv = line.recv_ns if line.recv_ns is not None else trade.T * MS
            # Bybit's public trades carry no liquidation flag (that is another topic).
            out.append(self.trade(trade.i, trade.p, trade.v, trade.S != "Sell", trade.T, recv))
        return out

    def _ticker(self, line: RawLine) -> list[Parsed]:
        msg = _TICKER.decode(line.raw)
        d = msg.data
        self.check_symbol(d.symbol)
        event = msg.ts * MS
        recv = line.recv_ns if line.recv_ns is not None else event
        out: list[Parsed] = []
        dec = self.decimal
        nft = int(d.nextFundingTime) if d.nextFundingTime else None
        if d.markPrice or d.indexPrice or d.fundingRate or nft:
            mark = dec(d.markPrice or None, "mark price")
            index = dec(d.indexPrice or None, "index price")
            funding = dec(d.fundingRate or None, "funding rate", positive=False)
            out.append(MarkUpdate(mark, index, funding, nft, event, recv))
        if d.openInterest:
            oi = dec(d.openInterest, "open interest", positive=False)
            value = dec(d.openInterestValue or None, "open interest value", positive=False)
            assert oi is not None
            if oi < 0 or (value is not None and value < 0):
                raise ParseRejection("bad_value", f"open interest {d.openInterest!r}")
            out.append(OpenInterest(oi, value, event, recv))
        return out

    def _liq(self, side_text: str, size: str, price: str, time_ms: int, recv: int | None) -> Parsed:
        side = LIQUIDATED_SIDE.get(side_text)
        if side is None:
            raise ParseRejection("bad_value", f"liquidation side {side_text!r}")
        sz = self.decimal(size, "liquidation size")
        px = self.decimal(price, "liquidation price")
        assert sz is not None and px is not None
        event = time_ms * MS
        return Liquidation(side, px, sz, event, recv if recv is not None else event)  # type: ignore[arg-type]

    def _all_liquidations(self, line: RawLine) -> list[Parsed]:
        msg = _ALL_LIQ.decode(line.raw)
        out: list[Parsed] = []
        for item in msg.data:
            self.check_symbol(item.s)
            out.append(self._liq(item.S, item.v, item.p, item.T, line.recv_ns))
        return out

    def _liquidation(self, line: RawLine) -> list[Parsed]:
        d = _LIQ.decode(line.raw).data
        self.check_symbol(d.symbol)
        return [self._liq(d.side, d.size, d.price, d.updatedTime, line.recv_ns)]

    def _book(self, line: RawLine) -> BookUpdate:
        msg = _BOOK.decode(line.raw)
        self.check_symbol(msg.data.s)
        if msg.type not in ("snapshot", "delta"):
            raise ParseRejection("unknown_stream", f"{msg.topic} type {msg.type}")
        event = msg.ts * MS
        recv = line.recv_ns if line.recv_ns is not None else event
        snapshot = msg.type == "snapshot" or msg.data.u == 1
        u = msg.data.u
        levels = self.levels.levels
        return BookUpdate(
            snapshot, u, u, u - 1, levels(msg.data.b), levels(msg.data.a), event, recv
        )
