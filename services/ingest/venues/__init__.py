"""Venue code: one folder per venue (parsing, live client), and where each market lives.

``C8_INGEST_VENUE_URLS`` points a market at another server implementing the venue's
public market-data API (a local venue emulator, a proxy, a testnet): comma-separated
``<venue>-<market>=<http base>|<ws base>``. The bases are what NautilusTrader's clients
take: Binance appends ``/fapi/v1/depth`` (USDⓈ-M), ``/dapi/v1/depth`` (COIN-M),
``/api/v3/depth`` (spot) to the HTTP base and ``/stream?streams=…`` to the WebSocket
base; Bybit's WebSocket base is the whole per-product URL (``…/v5/public/linear``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import ConfigError


@dataclass(frozen=True)
class VenueUrls:
    http: str
    ws: str


#: The venues' real public endpoints (Binance and Bybit API documentation).
DEFAULT_URLS: dict[str, VenueUrls] = {
    "binance-usdm": VenueUrls("https://fapi.binance.com", "wss://fstream.binance.com"),
    "binance-coinm": VenueUrls("https://dapi.binance.com", "wss://dstream.binance.com"),
    "binance-spot": VenueUrls("https://api.binance.com", "wss://stream.binance.com:9443"),
    "bybit-linear": VenueUrls("https://api.bybit.com", "wss://stream.bybit.com/v5/public/linear"),
    "bybit-spot": VenueUrls("https://api.bybit.com", "wss://stream.bybit.com/v5/public/spot"),
}


def parse_venue_urls(spec: str) -> dict[str, VenueUrls]:
    """``C8_INGEST_VENUE_URLS`` over the defaults: {``<venue>-<market>``: urls}."""
    urls = dict(DEFAULT_URLS)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        market, sep, bases = item.partition("=")
        http, bar, ws = bases.partition("|")
        market, http, ws = market.strip(), http.strip().rstrip("/"), ws.strip().rstrip("/")
        if not sep or not bar or market not in DEFAULT_URLS:
            raise ConfigError(
                f"bad C8_INGEST_VENUE_URLS item {item!r}: want <venue>-<market>=<http base>|"
                f"<ws base> with <venue>-<market> one of {', '.join(DEFAULT_URLS)}"
            )
        for url, schemes in ((http, ("http", "https")), (ws, ("ws", "wss"))):
            parts = urlsplit(url)
            if parts.scheme not in schemes or not parts.hostname:
                raise ConfigError(
                    f"bad C8_INGEST_VENUE_URLS item {item!r}: {url!r} is not a "
                    f"{' or '.join(schemes)} URL"
                )
        urls[market] = VenueUrls(http, ws)
    return urls
