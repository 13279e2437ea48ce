"""Assets across markets: which registered symbols make up one asset (pure, no I/O).

An asset is a base currency (``BTC``); its members are the registered symbols
(``keys.SYMBOLS``, written by ingest) whose venue symbol has that base, on any venue and
market. An asset report exists for a base with at least ``MIN_MEMBERS`` members. The
coordinator assigns each asset as one unit (``keys.asset_unit``), the calc worker that
owns it joins its members' books (``services/calc/analytics/asset.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from shared import keys
from shared.errors import InvalidSymbolError

#: Quote currencies, longest match first (as ingest splits venue symbols).
QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH")
#: Quotes treated as one currency (at par) in the consolidated book, crosses and basis.
USD_LIKE = frozenset({"USDT", "USDC", "USD"})
#: Fewest registered markets of one base for an asset report.
MIN_MEMBERS = 2
#: Binance COIN-M contract size in USD (contract specs); every other COIN-M contract: 10.
COINM_CONTRACT_USD: dict[str, int] = {"BTCUSD_PERP": 100}
DEFAULT_COINM_CONTRACT_USD = 10


def coinm_contract_usd(raw_symbol: str) -> int:
    """USD per contract of a Binance COIN-M symbol (``BTCUSD_PERP``: 100, others: 10)."""
    return COINM_CONTRACT_USD.get(raw_symbol.upper(), DEFAULT_COINM_CONTRACT_USD)

Kind = Literal["spot", "perp", "future"]


@dataclass(frozen=True, slots=True)
class Member:
    """One market of an asset, as the symbol registry describes it."""

    symbol: str
    venue: str
    market: str
    raw_symbol: str
    base: str
    quote: str
    kind: Kind
    #: USD per contract when sizes are contracts of an inverse contract (COIN-M), else 0:
    #: a size ``n`` at price ``p`` is then ``n * contract_usd / p`` base units.
    contract_usd: int = 0

    @property
    def usd_like(self) -> bool:
        return self.quote in USD_LIKE


def split_currencies(raw_symbol: str) -> tuple[str, str] | None:
    """(base, quote) of a venue symbol (``BTCUSD_PERP`` -> BTC, USD), None if unknown."""
    core = raw_symbol.upper().split("_", 1)[0]
    for quote in QUOTES:
        if core.endswith(quote) and len(core) > len(quote):
            return core[: -len(quote)], quote
    return None


def kind_of(market: str, raw_symbol: str) -> Kind:
    """``spot`` for spot markets, ``perp`` for perpetuals, ``future`` for dated futures."""
    if market == "spot":
        return "spot"
    if "_" in raw_symbol and not raw_symbol.upper().endswith("_PERP"):
        return "future"
    return "perp"


def member(symbol: str, raw: bytes | str | None) -> Member | None:
    """The member described by a ``keys.SYMBOLS`` value, None if it cannot be one
    (unparseable, no venue symbol, base not a valid asset name)."""
    if raw is None:
        return None
    try:
        info = json.loads(raw)
        venue = str(info["venue"]).upper()
        market = str(info["market"]).lower()
        raw_symbol = str(info.get("raw_symbol") or symbol)
        size_unit = str(info.get("size_unit") or "base")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    split = split_currencies(raw_symbol)
    if split is None:
        return None
    base, quote = split
    try:
        keys.check_asset(base)
    except InvalidSymbolError:
        return None
    contract_usd = 0
    if size_unit == "contracts":
        contract_usd = coinm_contract_usd(raw_symbol)
    return Member(
        symbol, venue, market, raw_symbol, base, quote, kind_of(market, raw_symbol), contract_usd
    )


def assets(registry: dict[str, bytes | str]) -> dict[str, list[Member]]:
    """Asset -> its members (sorted by symbol) for every base with >= ``MIN_MEMBERS``
    registered markets. ``registry`` is the ``keys.SYMBOLS`` hash, decoded keys."""
    by_base: dict[str, list[Member]] = {}
    for symbol in sorted(registry):
        m = member(symbol, registry[symbol])
        if m is not None:
            by_base.setdefault(m.base, []).append(m)
    return {base: ms for base, ms in sorted(by_base.items()) if len(ms) >= MIN_MEMBERS}
