"""Bybit v5 public WebSocket messages -> records (``orderbook.N.SYM``, ``publicTrade.SYM``).

Decoded with NautilusTrader's Bybit schemas. Bybit has one update id per book message,
so ``U = u`` and ``pu = u - 1``; ``u == 1`` is a fresh snapshot after a Bybit service
restart, whatever ``type`` says. Event time: the message's ``ts``. Recorded Bybit files
have no receive time: it is then the event time.
"""

from __future__ import annotations

import msgspec
from nautilus_trader.adapters.bybit.schemas.ws import BybitWsOrderbookDepthMsg, BybitWsTradeMsg

from services.ingest.parsing import MS, LineParser, Parsed, ParseRejection
from services.ingest.recorded import RawLine
from services.ingest.records import BookUpdate


class BybitTopic(msgspec.Struct):
    """Just the topic of a Bybit v5 message, to pick its schema."""

    topic: str


_BOOK = msgspec.json.Decoder(BybitWsOrderbookDepthMsg)
_TRADES = msgspec.json.Decoder(BybitWsTradeMsg)
_TOPIC = msgspec.json.Decoder(BybitTopic)


class BybitParser(LineParser):
    """One Bybit feed's book and trade messages."""

    def _parse(self, line: RawLine) -> list[Parsed]:
        topic = _TOPIC.decode(line.raw).topic
        if topic.startswith("publicTrade."):
            return self._trades(line)
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
