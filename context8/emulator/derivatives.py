"""Synthetic derivatives frames, derived deterministically from the recording (pure).

No recording of the venues' derivatives streams exists in ``data/``, so the emulator
makes them up -- in the venues' documented shapes, from the recorded frames, the same
whatever the pace (a function of the frames in order, never of the wall clock):

* **mark / index / funding** (Binance ``<sym>@markPrice@1s``; Bybit linear
  ``tickers.<SYM>``): at the first recorded frame of each exchange second once a price
  is known, index = that price (8 decimals), mark = index × (1 + ``PREMIUM``) (8
  decimals), funding rate ``FUNDING_RATE``, next funding time the next 00:00 / 08:00 /
  16:00 UTC after the frame. The price: Binance the last recorded trade's (cheap: the
  futures books hold thousands of levels); Bybit (no trades in the bundled file) the true
  book's mid. Event time (Binance ``E``, Bybit ``ts``): the triggering frame's exchange
  time.
* **open interest**: ``open_interest(t_ms)``, a function of the exchange time alone
  (Binance REST ``openInterest`` answers it at the current clock position; Bybit's
  ``tickers`` carry it, with ``openInterestValue`` = open interest × mark).
* **liquidations**: Binance ``<sym>@forceOrder``: every recorded futures trade whose id
  is a multiple of ``LIQUIDATION_EVERY`` becomes a filled liquidation order (the trade's
  price and quantity; ``S`` = the trade's taker side, so a taker sell is a long
  liquidated), at most one per 1000 ms like the venue's snapshot stream. Bybit
  ``allLiquidation.<SYM>`` (the bundled Bybit file has no trades): every book frame whose
  update id is a multiple of ``BYBIT_LIQUIDATION_EVERY`` gives one liquidation at the best
  bid (``S=Buy``: a long liquidated, sold) or best ask (``S=Sell``), alternately.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from context8.emulator.book import BookKeeper
from context8.emulator.recording import Event, Kind

PREMIUM = Decimal("0.0005")  # mark 5 bps over index
FUNDING_RATE = "0.00010000"
FUNDING_INTERVAL_MS = 8 * 3600 * 1000
LIQUIDATION_EVERY = 20
BYBIT_LIQUIDATION_EVERY = 5
BYBIT_LIQUIDATION_SIZES = ("100", "250", "40", "1000", "75")
_Q8 = Decimal("0.00000001")


def next_funding_ms(t_ms: int) -> int:
    return (t_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


def open_interest(t_ms: int) -> str:
    """The synthetic open interest at exchange time ``t_ms`` (3 decimals): a saw-tooth
    over each 1000 s, so successive polls see it change."""
    return f"{Decimal(50_000) + Decimal((t_ms // 1000) % 1000) / 4:.3f}"


@dataclass(frozen=True)
class MarkValues:
    mark: str
    index: str
    funding: str
    next_funding_ms: int


def mark_values(price: Decimal, t_ms: int) -> MarkValues:
    index = price.quantize(_Q8)
    mark = (index * (1 + PREMIUM)).quantize(_Q8)
    return MarkValues(str(mark), str(index), FUNDING_RATE, next_funding_ms(t_ms))


def _best(keeper: BookKeeper) -> tuple[str, str] | None:
    book = keeper.book
    if not keeper.known or not book.bids or not book.asks:
        return None
    return max(book.bids, key=float), min(book.asks, key=float)


def _mid(keeper: BookKeeper) -> Decimal | None:
    best = _best(keeper)
    return None if best is None else (Decimal(best[0]) + Decimal(best[1])) / 2


def binance_mark_text(symbol: str, t_ms: int, v: MarkValues) -> str:
    data = {
        "e": "markPriceUpdate",
        "E": t_ms,
        "s": symbol,
        "p": v.mark,
        "i": v.index,
        "P": v.index,
        "r": v.funding,
        "T": v.next_funding_ms,
    }
    return orjson.dumps({"stream": f"{symbol.lower()}@markPrice@1s", "data": data}).decode()


def binance_open_interest_body(symbol: str, pair: str | None, t_ms: int) -> dict[str, object]:
    """``GET /fapi/v1/openInterest`` (COIN-M adds ``pair`` and ``contractType``)."""
    body: dict[str, object] = {"openInterest": open_interest(t_ms), "symbol": symbol}
    if pair is not None:
        body["pair"] = pair
        body["contractType"] = "PERPETUAL"
    body["time"] = t_ms
    return body


def bybit_ticker_text(symbol: str, t_ms: int, v: MarkValues, kind: str = "delta") -> str:
    oi = open_interest(t_ms)
    value = (Decimal(oi) * Decimal(v.mark)).quantize(Decimal("0.01"))
    data = {
        "symbol": symbol,
        "markPrice": v.mark,
        "indexPrice": v.index,
        "fundingRate": v.funding,
        "nextFundingTime": str(v.next_funding_ms),
        "openInterest": oi,
        "openInterestValue": str(value),
    }
    msg = {"topic": f"tickers.{symbol}", "type": kind, "data": data, "cs": t_ms, "ts": t_ms}
    return orjson.dumps(msg).decode()


class Synthesiser:
    """Watches one symbol's frames in order (after each is applied to the true book) and
    returns the synthetic frames they give, as schedule ``Event``s of kind ``MARK`` or
    ``LIQUIDATION`` at the triggering frame's schedule time."""

    def __init__(self, venue: str, symbol: str, futures: bool) -> None:
        self.venue = venue
        self.symbol = symbol
        self.futures = futures
        self._second: int | None = None
        self._last_force_ms: int | None = None
        #: Binance: the last recorded trade's price (the synthetic index).
        self._last_price: Decimal | None = None
        #: The newest Bybit tickers values and their time (a new subscriber's snapshot).
        self.last_ticker: tuple[int, MarkValues] | None = None

    def observe(self, ev: Event, keeper: BookKeeper) -> list[Event]:
        if not self.futures or ev.kind in (Kind.OTHER, Kind.MARK, Kind.LIQUIDATION):
            return []
        t_ms = ev.t + ev.offset
        out: list[Event] = []
        trade: dict[str, Any] | None = None
        if self.venue == "binance" and ev.kind is Kind.TRADE:
            trade = orjson.loads(ev.text)["data"]
            self._last_price = Decimal(str(trade["p"]))
        second = t_ms // 1000
        if second != self._second:
            price = self._last_price if self.venue == "binance" else _mid(keeper)
            if price is not None:
                self._second = second
                values = mark_values(price, t_ms)
                if self.venue == "binance":
                    text = binance_mark_text(self.symbol, t_ms, values)
                    stream = f"{self.symbol.lower()}@markPrice@1s"
                else:
                    self.last_ticker = (t_ms, values)
                    text = bybit_ticker_text(self.symbol, t_ms, values)
                    stream = f"tickers.{self.symbol}"
                out.append(Event(ev.t, ev.offset, Kind.MARK, stream, text))
        if trade is not None:
            liq = self._force_order(ev, trade)
            if liq is not None:
                out.append(liq)
        elif self.venue != "binance" and ev.kind in (Kind.DEPTH, Kind.SNAPSHOT):
            liq = self._bybit_liquidation(ev, keeper, t_ms)
            if liq is not None:
                out.append(liq)
        return out

    def _force_order(self, ev: Event, data: dict[str, Any]) -> Event | None:
        if int(data["t"]) % LIQUIDATION_EVERY:
            return None
        trade_ms = int(data["T"])
        if self._last_force_ms is not None and trade_ms - self._last_force_ms < 1000:
            return None
        self._last_force_ms = trade_ms
        order = {
            "s": self.symbol,
            "S": "SELL" if data["m"] else "BUY",
            "o": "LIMIT",
            "f": "IOC",
            "q": data["q"],
            "p": data["p"],
            "ap": data["p"],
            "X": "FILLED",
            "l": data["q"],
            "z": data["q"],
            "T": trade_ms,
        }
        if "_" in self.symbol:  # COIN-M carries the pair
            order["ps"] = self.symbol.split("_", 1)[0]
        stream = f"{self.symbol.lower()}@forceOrder"
        body = {"e": "forceOrder", "E": int(data["E"]), "o": order}
        text = orjson.dumps({"stream": stream, "data": body}).decode()
        return Event(ev.t, ev.offset, Kind.LIQUIDATION, stream, text)

    def _bybit_liquidation(self, ev: Event, keeper: BookKeeper, t_ms: int) -> Event | None:
        n, rest = divmod(ev.last_id, BYBIT_LIQUIDATION_EVERY)
        best = _best(keeper)
        if rest or best is None:
            return None
        long_side = n % 2 == 0
        item = {
            "T": t_ms,
            "s": self.symbol,
            "S": "Buy" if long_side else "Sell",
            "v": BYBIT_LIQUIDATION_SIZES[n % len(BYBIT_LIQUIDATION_SIZES)],
            "p": best[0] if long_side else best[1],
        }
        topic = f"allLiquidation.{self.symbol}"
        msg = {"topic": topic, "type": "snapshot", "ts": t_ms, "data": [item]}
        return Event(ev.t, ev.offset, Kind.LIQUIDATION, topic, orjson.dumps(msg).decode())
