"""A local venue emulator: recorded frames served as Binance / Bybit public market data.

Real WebSocket and HTTP on loopback, one port, one path prefix per market, so real
clients (NautilusTrader's Binance and Bybit data clients, or any client following the
venues' docs) can be pointed at it through their base URLs. See README.md here.
"""

from context8.emulator.markets import MARKETS, http_base, venue_urls, ws_base

__all__ = ["MARKETS", "http_base", "venue_urls", "ws_base"]
