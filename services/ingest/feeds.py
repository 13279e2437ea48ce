"""Which feeds ingest runs: venue, market, symbol and price/size precision of each.

A feed is one venue instrument published as one report symbol (one Redis Stream).
In replay mode the feeds come from the recorded files' paths, laid out as in the kit:
``<venue>-<market>/<SYMBOL>/<file>``; a symbol's files are replayed in date order
(they are one continuous stream). In live mode they come from
``C8_INGEST_LIVE_SYMBOLS`` (``<venue>-<market>:<SYMBOL>,...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from shared import assets
from shared.errors import ConfigError, InvalidSymbolError
from shared.keys import check_symbol

Venue = Literal["BINANCE", "BYBIT"]
Market = Literal["usdm", "coinm", "spot", "linear"]

#: kit directory name -> (venue, market)
FEED_DIRS: dict[str, tuple[Venue, Market]] = {
    "binance-usdm": ("BINANCE", "usdm"),
    "binance-coinm": ("BINANCE", "coinm"),
    "binance-spot": ("BINANCE", "spot"),
    "bybit-linear": ("BYBIT", "linear"),
    "bybit-spot": ("BYBIT", "spot"),
}

#: (venue, market, raw symbol) -> (price precision, size precision). Binance spot prints
#: quantities with 8 decimals, so 8 can never put a recorded size off the grid.
KNOWN_PRECISIONS: dict[tuple[str, str, str], tuple[int, int]] = {
    ("BINANCE", "usdm", "BTCUSDT"): (1, 3),
    ("BINANCE", "usdm", "ETHUSDT"): (2, 3),
    ("BINANCE", "usdm", "SOLUSDT"): (2, 0),
    ("BINANCE", "usdm", "XRPUSDT"): (4, 1),
    ("BINANCE", "coinm", "BTCUSD_PERP"): (1, 0),
    ("BINANCE", "coinm", "ETHUSD_PERP"): (2, 0),
    ("BINANCE", "spot", "BTCUSDT"): (2, 8),
    ("BINANCE", "spot", "ETHUSDT"): (2, 8),
    ("BYBIT", "linear", "BTCUSDT"): (1, 3),
    ("BYBIT", "linear", "ETHUSDT"): (2, 2),
    ("BYBIT", "linear", "XRPUSDT"): (4, 0),
    ("BYBIT", "spot", "BTCUSDT"): (2, 6),
}

_DATE_RE = re.compile(r"(\d{8})|(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Feed:
    """One venue instrument, published under ``symbol``."""

    venue: Venue
    market: Market
    raw_symbol: str  # as the venue spells it, e.g. BTCUSD_PERP
    symbol: str  # report / stream symbol, A-Z0-9
    price_precision: int
    size_precision: int
    files: tuple[Path, ...] = field(default=())

    @cached_property  # read once per message on the hot path
    def instrument_id(self) -> str:
        """Nautilus instrument id string, as Nautilus's own adapters spell it."""
        if self.venue == "BINANCE":
            suffix = "-PERP" if self.market == "usdm" else ""
            return f"{self.raw_symbol}{suffix}.BINANCE"
        suffix = "-LINEAR" if self.market == "linear" else "-SPOT"
        return f"{self.raw_symbol}{suffix}.BYBIT"

    @cached_property
    def feed_dir(self) -> str:
        """``<venue>-<market>``, as in the kit layout and ``C8_INGEST_VENUE_URLS``."""
        return f"{self.venue.lower()}-{self.market}"

    @cached_property
    def is_futures(self) -> bool:
        return self.venue == "BINANCE" and self.market in ("usdm", "coinm")

    def registration(self) -> dict[str, object]:
        """The JSON registered in hash ``keys.SYMBOLS`` for this symbol."""
        return {
            "venue": self.venue,
            "market": self.market,
            "raw_symbol": self.raw_symbol,
            "instrument_id": self.instrument_id,
            "pp": self.price_precision,
            "sp": self.size_precision,
            "size_unit": "contracts" if self.market == "coinm" else "base",
        }


def split_currencies(raw_symbol: str, market: str) -> tuple[str, str]:
    """(base, quote) of a venue symbol, e.g. BTCUSDT -> (BTC, USDT), BTCUSD_PERP -> (BTC, USD)."""
    split = assets.split_currencies(raw_symbol)
    if split is not None:
        return split
    raise ConfigError(f"cannot split {raw_symbol!r} ({market}) into base and quote currency")


def report_symbol(raw_symbol: str) -> str:
    """Report symbol of a venue symbol: upper case, letters and digits only."""
    symbol = re.sub(r"[^A-Z0-9]", "", raw_symbol.upper())
    try:
        return check_symbol(symbol)
    except InvalidSymbolError as exc:
        raise ConfigError(str(exc)) from exc


def file_date_key(path: Path) -> str:
    """Sort key putting a symbol's day files in date order (the date embedded in the name)."""
    match = _DATE_RE.search(path.name)
    if match is None:
        return path.name
    return (match.group(1) or match.group(2).replace("-", "")) + path.name


def infer_feed_dir(path: Path) -> tuple[Venue, Market, str]:
    """(venue, market, raw symbol) from a kit path ``<venue>-<market>/<SYMBOL>/<file>``."""
    parts = path.parts
    if len(parts) < 3 or parts[-3] not in FEED_DIRS:
        known = ", ".join(sorted(FEED_DIRS))
        raise ConfigError(
            f"cannot infer venue/market/symbol of {str(path)!r}: expected "
            f"<venue>-<market>/<SYMBOL>/<file> with <venue>-<market> one of {known}"
        )
    venue, market = FEED_DIRS[parts[-3]]
    return venue, market, parts[-2].upper()


def parse_symbol_map(spec: str) -> dict[tuple[str, str], str]:
    """``binance-spot:BTCUSDT=BTCUSDTSPOT,...`` -> {(feed dir, raw symbol): report symbol}."""
    mapping: dict[tuple[str, str], str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            left, symbol = item.split("=", 1)
            feed_dir, raw = left.split(":", 1)
        except ValueError as exc:
            raise ConfigError(
                f"bad symbol map item {item!r}: want <venue>-<market>:RAW=SYMBOL"
            ) from exc
        if feed_dir not in FEED_DIRS:
            raise ConfigError(f"bad symbol map item {item!r}: unknown feed dir {feed_dir!r}")
        try:
            mapping[(feed_dir, raw.upper())] = check_symbol(symbol.strip())
        except InvalidSymbolError as exc:
            raise ConfigError(f"bad symbol map item {item!r}: {exc}") from exc
    return mapping


def parse_precisions(spec: str) -> dict[str, tuple[int, int]]:
    """``BTCUSDT=1:3,...`` -> {raw symbol: (price precision, size precision)}."""
    out: dict[str, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            raw, precs = item.split("=", 1)
            pp, sp = (int(x) for x in precs.split(":", 1))
        except ValueError as exc:
            raise ConfigError(f"bad precision item {item!r}: want RAW=PP:SP") from exc
        if not (0 <= pp <= 12 and 0 <= sp <= 12):
            raise ConfigError(f"bad precision item {item!r}: precisions must be 0..12")
        out[raw.upper()] = (pp, sp)
    return out


def replay_feeds(
    paths: list[Path],
    precisions: dict[str, tuple[int, int]] | None = None,
    symbol_map: dict[tuple[str, str], str] | None = None,
    scan_precisions: bool = True,
) -> list[Feed]:
    """Group recorded files into feeds (one per venue instrument), files in date order.

    Raises ``ConfigError`` when a file is missing, its feed cannot be inferred, or two
    feeds would publish the same report symbol.
    """
    if not paths:
        raise ConfigError("C8_INGEST_REPLAY_FILES is empty: give at least one recorded file")
    precisions = precisions or {}
    symbol_map = symbol_map or {}
    grouped: dict[tuple[Venue, Market, str], list[Path]] = {}
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"recorded file not found: {str(path)!r}")
        grouped.setdefault(infer_feed_dir(path), []).append(path)
    feeds: list[Feed] = []
    owners: dict[str, tuple[str, str, str]] = {}
    for (venue, market, raw), files in grouped.items():
        feed_dir = f"{venue.lower()}-{market}"
        symbol = symbol_map.get((feed_dir, raw)) or report_symbol(raw)
        if symbol in owners:
            other = "-".join(owners[symbol][:2]).lower() + "/" + owners[symbol][2]
            raise ConfigError(
                f"two feeds publish symbol {symbol!r}: {other} and {feed_dir}/{raw}; "
                "replay them separately or rename one with C8_INGEST_SYMBOL_MAP"
            )
        owners[symbol] = (venue, market, raw)
        ordered = tuple(sorted(files, key=file_date_key))
        pp_sp = precisions.get(raw) or KNOWN_PRECISIONS.get((venue, market, raw))
        if pp_sp is None:
            if not scan_precisions:
                raise ConfigError(
                    f"no known precision for {feed_dir}/{raw}: set C8_INGEST_PRECISIONS"
                )
            from services.ingest.recorded import observed_precisions

            pp_sp = observed_precisions(ordered[0], venue)
        feeds.append(Feed(venue, market, raw, symbol, pp_sp[0], pp_sp[1], ordered))
    return sorted(feeds, key=lambda f: f.symbol)


def live_feeds(
    spec: str,
    precisions: dict[str, tuple[int, int]],
    symbol_map: dict[tuple[str, str], str],
) -> list[Feed]:
    """Feeds from ``C8_INGEST_LIVE_SYMBOLS`` (``binance-usdm:BTCUSDT,bybit-linear:XRPUSDT``)."""
    feeds: list[Feed] = []
    seen: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        feed_dir, sep, raw = item.partition(":")
        if not sep or feed_dir not in FEED_DIRS or not raw:
            raise ConfigError(
                f"bad C8_INGEST_LIVE_SYMBOLS item {item!r}: want <venue>-<market>:<SYMBOL> "
                f"with <venue>-<market> one of {', '.join(sorted(FEED_DIRS))}"
            )
        venue, market = FEED_DIRS[feed_dir]
        raw = raw.upper()
        pp_sp = precisions.get(raw) or KNOWN_PRECISIONS.get((venue, market, raw))
        if pp_sp is None:
            known = sorted(r for v, m, r in KNOWN_PRECISIONS if (v, m) == (venue, market))
            raise ConfigError(
                f"unknown live symbol {raw} on {feed_dir}: ingest knows "
                f"{', '.join(known) or 'no symbols'} there; if the venue lists {raw}, "
                f"give its precisions with C8_INGEST_PRECISIONS={raw}=PP:SP"
            )
        symbol = symbol_map.get((feed_dir, raw)) or report_symbol(raw)
        if symbol in seen:
            raise ConfigError(
                f"two feeds publish symbol {symbol!r}: {seen[symbol]} and {item}; "
                "rename one with C8_INGEST_SYMBOL_MAP"
            )
        seen[symbol] = item
        feeds.append(Feed(venue, market, raw, symbol, pp_sp[0], pp_sp[1]))
    if not feeds:
        raise ConfigError("C8_INGEST_MODE=live needs C8_INGEST_LIVE_SYMBOLS")
    return feeds
