"""Renamed copies of a recorded symbol, for runs with many symbols.

``--copies binance-usdm:BTCUSDT=3`` serves ``BTC001USDT``, ``BTC002USDT``,
``BTC003USDT``: the same recorded frames with the stream names and the symbol fields
(``s``, COIN-M ``ps``, Bybit topics) renamed, each copy with its own clock and book.
Names stay within A-Z0-9 (plus the venue's own ``_PERP`` style suffix).
"""

from __future__ import annotations

from dataclasses import dataclass

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH", "BNB")


class CopySpecError(ValueError):
    """A ``--copies`` value that cannot be used."""


def parse_copies(specs: list[str]) -> dict[tuple[str, str], int]:
    """``["binance-usdm:BTCUSDT=3", ...]`` -> {(market, SYMBOL): 3}."""
    out: dict[tuple[str, str], int] = {}
    for spec in specs:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            left, eq, count = item.partition("=")
            market, colon, symbol = left.partition(":")
            if not eq or not colon or not symbol or not count.isdigit() or int(count) < 1:
                raise CopySpecError(f"bad --copies item {item!r}: want <market>:<SYMBOL>=N")
            out[(market, symbol.upper())] = int(count)
    return out


def _split(symbol: str) -> tuple[str, str, str]:
    """(base, quote, suffix): BTCUSDT -> (BTC, USDT, ""), BTCUSD_PERP -> (BTC, USD, _PERP)."""
    core, sep, tail = symbol.partition("_")
    suffix = sep + tail
    for quote in _QUOTES:
        if core.endswith(quote) and len(core) > len(quote):
            return core[: -len(quote)], quote, suffix
    return core, "", suffix


def copy_names(symbol: str, count: int) -> list[str]:
    """Names of ``count`` copies: a zero-padded number after the base asset."""
    base, quote, suffix = _split(symbol)
    width = max(3, len(str(count)))
    return [f"{base}{i:0{width}d}{quote}{suffix}" for i in range(1, count + 1)]


def pair_of(symbol: str) -> str:
    """COIN-M pair of a symbol (``BTCUSD_PERP`` -> ``BTCUSD``)."""
    return symbol.partition("_")[0]


@dataclass(frozen=True)
class Renamer:
    """Rewrites recorded frames of ``original`` as frames of ``name``."""

    original: str
    name: str

    def text(self, frame: str) -> str:
        o, n = self.original, self.name
        out = frame.replace(f'"s":"{o}"', f'"s":"{n}"')
        out = out.replace(f'"{o.lower()}@', f'"{n.lower()}@')  # Binance stream names
        out = out.replace(f'.{o}"', f'.{n}"')  # Bybit topics: orderbook.500.XRPUSDT
        po, pn = pair_of(o), pair_of(n)
        if po != o:
            out = out.replace(f'"ps":"{po}"', f'"ps":"{pn}"')
        return out

    def stream(self, name: str) -> str:
        """A recorded stream name / topic of the original, renamed."""
        o, n = self.original, self.name
        if name.startswith(o.lower() + "@"):
            return n.lower() + name[len(o) :]
        if name.endswith("." + o):
            return name[: -len(o)] + n
        return name
