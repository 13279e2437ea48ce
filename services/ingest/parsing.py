"""Venue lines -> records (``records.py``): the venue-independent part.

Each venue has its parser in ``venues/<venue>/parsing.py``, decoding with the msgspec
structs of NautilusTrader's own adapters (the schemas its live clients use) and
converting every number once, exactly, to the wire's scaled ints. ``parser_for(feed)``
picks it. The same parser reads recorded lines (replay, ``report-at``) and live
WebSocket frames and REST bodies.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import msgspec

from services.ingest.feeds import Feed
from services.ingest.recorded import RawLine
from services.ingest.records import BookUpdate, Liquidation, MarkUpdate, OpenInterest, Quote, Trade
from services.ingest.scaling import LevelScaler, ValueRejection, scaled

MS = 1_000_000

#: What one line can hold.
Parsed = BookUpdate | Trade | Quote | MarkUpdate | OpenInterest | Liquidation


class ParseRejection(Exception):
    """A line that cannot be used; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class LineParser(ABC):
    """Parses one feed's lines, in order (it keeps the feed's exchange-time watermark)."""

    def __init__(self, feed: Feed, quotes: bool = True) -> None:
        """``quotes=False``: the venue's best bid/ask lines (Binance bookTicker) are
        only counted (``quotes_skipped``), not parsed: only verification uses them."""
        self.feed = feed
        self.pp = feed.price_precision
        self.sp = feed.size_precision
        self.levels = LevelScaler(self.pp, self.sp)
        self.quotes = quotes
        self.quotes_skipped = 0
        #: Newest exchange time seen: the event time of a message that carries none
        #: (the Binance spot REST snapshot), so it sorts where it arrived.
        self.watermark_ns = 0

    def parse(self, line: RawLine) -> Parsed:
        """Parse a line holding one message, or raise ``ParseRejection``."""
        msgs = self.parse_all(line)
        if len(msgs) != 1:
            raise ParseRejection("malformed", f"{len(msgs)} messages in one line")
        return msgs[0]

    def parse_all(self, line: RawLine) -> list[Parsed]:
        """Every record of one line (a Bybit trade message holds several) or raise."""
        try:
            msgs = self._parse(line)
        except ParseRejection:
            raise
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ParseRejection("malformed", str(exc)) from exc
        except ValueRejection as exc:
            raise ParseRejection(exc.reason, str(exc)) from exc
        except (ValueError, TypeError, LookupError, ArithmeticError) as exc:
            raise ParseRejection("bad_value", repr(exc)) from exc
        for msg in msgs:
            if msg.event_ns > self.watermark_ns:
                self.watermark_ns = msg.event_ns
        return msgs

    @abstractmethod
    def _parse(self, line: RawLine) -> list[Parsed]:
        """The venue's decoding (errors are mapped to rejections by ``parse_all``)."""

    def trade(
        self,
        trade_id: str,
        price: str,
        size: str,
        buyer_aggressor: bool,
        time_ms: int,
        recv: int,
        liq: bool = False,
    ) -> Trade:
        sz = scaled(size, self.sp)
        if sz <= 0:
            raise ValueRejection("bad_value", f"trade size {size}")
        return Trade(
            trade_id,
            scaled(price, self.pp),
            sz,
            "B" if buyer_aggressor else "S",
            liq,
            time_ms * MS,
            recv,
        )

    def decimal(self, text: str | None, what: str, positive: bool = True) -> float | None:
        """A venue decimal string as a float (None stays None); non-finite, or not
        positive where it must be, is a ``bad_value`` rejection."""
        if text is None:
            return None
        value = float(text)
        if not math.isfinite(value) or (positive and value <= 0):
            raise ValueRejection("bad_value", f"{what} {text!r}")
        return value

    def check_symbol(self, symbol: object) -> None:
        if symbol != self.feed.raw_symbol:
            raise ParseRejection("wrong_symbol", f"{symbol!r} in the {self.feed.raw_symbol} feed")


def parser_for(feed: Feed, quotes: bool = True) -> LineParser:
    """The parser of the feed's venue."""
    if feed.venue == "BYBIT":
        from services.ingest.venues.bybit.parsing import BybitParser

        return BybitParser(feed, quotes)
    from services.ingest.venues.binance.parsing import BinanceParser

    return BinanceParser(feed, quotes)
