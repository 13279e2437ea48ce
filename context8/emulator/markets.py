"""The markets the emulator serves: paths, base URLs and the venues' documented limits.

Every market lives under its own path prefix on the one port, so each gets its own
base URLs, exactly the shape Nautilus's clients take (``base_url_http`` /
``base_url_ws``; Bybit: the full public WebSocket URL per product type).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Venue = Literal["binance", "bybit"]


@dataclass(frozen=True)
class MarketLimits:
    """A market's public limits as its venue documents them (``None``: none enforced)."""

    #: streams (Binance) one connection may listen to
    streams_per_connection: int | None
    #: incoming WebSocket messages (text, ping, pong frames) per second per connection
    messages_per_second: int | None
    #: WebSocket connection attempts per IP per ``connection_window_s``
    connections_per_window: int
    connection_window_s: float
    #: REST request weight per IP per minute
    weight_per_minute: int | None
    #: Bybit: topics in one subscribe request
    args_per_request: int | None
    #: Bybit: characters of all topics of one connection
    args_chars_per_connection: int | None


#: Binance USDⓈ-M / COIN-M futures: 10 messages/s, 300 connects per 5 min, 2400 weight/min;
#: 200 streams per connection (the limit Nautilus's client is built for; newer futures
#: docs allow 1024).
FUTURES_LIMITS = MarketLimits(200, 10, 300, 300.0, 2400, None, None)
#: Binance spot: 5 messages/s (ping and pong frames count), 1024 streams, 6000 weight/min.
SPOT_LIMITS = MarketLimits(1024, 5, 300, 300.0, 6000, None, None)
#: Bybit public linear: 500 connects per 5 min per endpoint; args ≤ 21,000 characters.
BYBIT_LINEAR_LIMITS = MarketLimits(None, None, 500, 300.0, None, None, 21_000)
#: Bybit public spot: at most 10 topics per subscribe request.
BYBIT_SPOT_LIMITS = MarketLimits(None, None, 500, 300.0, None, 10, 21_000)


@dataclass(frozen=True)
class MarketSpec:
    """One ``<venue>-<market>`` as laid out in the kit (``data/<name>/<SYMBOL>/<file>``)."""

    name: str
    venue: Venue
    kind: str
    #: Binance REST prefix (``/fapi/v1``); Bybit: ``None`` (v5 REST under ``/v5``)
    rest_prefix: str | None
    #: Bybit WebSocket path (``/v5/public/linear``); Binance: ``None``
    ws_path: str | None
    limits: MarketLimits
    #: Bybit order-book depths the topic ``orderbook.N.SYM`` accepts
    book_depths: tuple[int, ...] = ()

    @property
    def is_binance(self) -> bool:
        return self.venue == "binance"

    @property
    def is_futures(self) -> bool:
        """Binance futures (sync rule ``u < lastUpdateId`` covered, ``pu`` chain)."""
        return self.venue == "binance" and self.kind in ("usdm", "coinm")


MARKETS: dict[str, MarketSpec] = {
    "binance-usdm": MarketSpec("binance-usdm", "binance", "usdm", "/fapi/v1", None, FUTURES_LIMITS),
    "binance-coinm": MarketSpec(
        "binance-coinm", "binance", "coinm", "/dapi/v1", None, FUTURES_LIMITS
    ),
    "binance-spot": MarketSpec("binance-spot", "binance", "spot", "/api/v3", None, SPOT_LIMITS),
    "bybit-linear": MarketSpec(
        "bybit-linear",
        "bybit",
        "linear",
        None,
        "/v5/public/linear",
        BYBIT_LINEAR_LIMITS,
        (1, 50, 200, 500, 1000),
    ),
    "bybit-spot": MarketSpec(
        "bybit-spot",
        "bybit",
        "spot",
        None,
        "/v5/public/spot",
        BYBIT_SPOT_LIMITS,
        (1, 50, 200, 1000),
    ),
}


def http_base(host: str, port: int, market: str) -> str:
    """Base URL a REST client is given (the venue paths are appended to it)."""
    return f"http://{host}:{port}/{market}"


def ws_base(host: str, port: int, market: str) -> str:
    """Base URL a WebSocket client is given.

    Binance clients append ``/stream?streams=...`` or ``/ws/<stream>``; Bybit clients
    connect to the URL as it is, so it carries the public path of the product type.
    """
    spec = MARKETS[market]
    base = f"ws://{host}:{port}/{market}"
    return base + spec.ws_path if spec.ws_path else base


def venue_urls(host: str, port: int, markets: Iterable[str] | None = None) -> str:
    """The value of ``C8_INGEST_VENUE_URLS``: ``<market>=<http base>|<ws base>,...``."""
    names = list(MARKETS) if markets is None else list(markets)
    return ",".join(
        f"{name}={http_base(host, port, name)}|{ws_base(host, port, name)}" for name in names
    )
