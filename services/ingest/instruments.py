"""Nautilus instruments built from the feed table (no venue API call, no API keys)."""

from __future__ import annotations

from nautilus_trader.model.currencies import Currency
from nautilus_trader.model.identifiers import InstrumentId, Symbol
from nautilus_trader.model.instruments import CryptoPerpetual, CurrencyPair, Instrument
from nautilus_trader.model.objects import Price, Quantity

from services.ingest.feeds import Feed, split_currencies
from shared.assets import coinm_contract_usd


def _currency(code: str) -> Currency:
    # strict=False creates an unknown crypto code instead of failing.
    return Currency.from_str(code, strict=False)


def _increment(precision: int) -> str:
    return "1" if precision == 0 else "0." + "0" * (precision - 1) + "1"


def make_instrument(feed: Feed) -> Instrument:
    """CurrencyPair for spot, CryptoPerpetual for perpetuals (COIN-M inverse, in contracts)."""
    base, quote = split_currencies(feed.raw_symbol, feed.market)
    instrument_id = InstrumentId.from_str(feed.instrument_id)
    raw = Symbol(feed.raw_symbol)
    price_inc = Price.from_str(_increment(feed.price_precision))
    size_inc = Quantity.from_str(_increment(feed.size_precision))
    if feed.market == "spot":
        return CurrencyPair(
            instrument_id,
            raw,
            _currency(base),
            _currency(quote),
            feed.price_precision,
            feed.size_precision,
            price_inc,
            size_inc,
            0,
            0,
        )
    inverse = feed.market == "coinm"
    settlement = base if inverse else quote
    multiplier = (
        Quantity.from_int(coinm_contract_usd(feed.raw_symbol))
        if inverse
        else Quantity.from_int(1)
    )
    return CryptoPerpetual(
        instrument_id,
        raw,
        _currency(base),
        _currency(quote),
        _currency(settlement),
        inverse,
        feed.price_precision,
        feed.size_precision,
        price_inc,
        size_inc,
        0,
        0,
        multiplier=multiplier,
    )
