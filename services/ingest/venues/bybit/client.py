"""Bybit live market data through NautilusTrader's Bybit data client (public v5 WebSocket).

Nautilus's ``BybitDataClient`` connects one WebSocket per product (``<ws base>`` is the
whole URL, e.g. ``wss://stream.bybit.com/v5/public/linear``), subscribes with
``{"op": "subscribe", "args": [...]}`` (re-subscribing every topic in requests of at
most 10 after a reconnect, Bybit's limit per request) and pings every 20 s. Ingest adds:

* frames parsed with ingest's Bybit parser and handed on with their records;
* the book topic is ``orderbook.500.<SYMBOL>`` on linear (Nautilus's deepest; spot
  200); Bybit sends a ``snapshot`` on subscribe, then ``delta``s; a re-sync (gap,
  stall) unsubscribes and subscribes the topic again, which makes Bybit send a fresh
  snapshot (no REST call, no request weight);
* every message sent is paced to 4 per second per connection;
* connecting retries until the venue answers, then sends every subscription made
  meanwhile (Nautilus alone gives up after a failed first connect);
* **derivatives** (linear only): with the trades, each symbol also subscribes
  ``tickers.<SYM>`` (mark, index, funding rate, next funding time, open interest and
  its value; a snapshot, then deltas) and ``allLiquidation.<SYM>`` (liquidations); no
  REST polling (Bybit's tickers carry the open interest).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.adapters.bybit.config import BybitDataClientConfig
from nautilus_trader.adapters.bybit.data import BybitDataClient
from nautilus_trader.adapters.bybit.http.client import BybitHttpClient
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.data.messages import SubscribeTradeTicks
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest.feeds import Feed
from services.ingest.venue_limits import MESSAGES_PER_SECOND, SlidingWindowLimiter
from services.ingest.venues import VenueUrls
from services.ingest.venues.live import LiveFeeds

PRODUCT = {"bybit-linear": BybitProductType.LINEAR, "bybit-spot": BybitProductType.SPOT}


class LiveBybitClient(LiveFeeds, BybitDataClient):
    """Bybit order book / trades parsed by ingest (snapshots come over the WebSocket)."""

    _ws_clients: dict[BybitProductType, Any]
    _depths: dict[InstrumentId, int]

    def init_feeds(
        self, market: str, feeds: list[Feed], side: Any, urls: VenueUrls, log: Any
    ) -> None:
        super().init_feeds(market, feeds, side, urls, log)
        for ws in self._ws_clients.values():
            limiter = SlidingWindowLimiter(MESSAGES_PER_SECOND, 1.0)
            send = ws._send

            async def paced_send(
                msg: dict[str, Any], send: Any = send, limiter: SlidingWindowLimiter = limiter
            ) -> None:
                await limiter.acquire()
                await send(msg)

            ws._send = paced_send
            # Nautilus's Bybit client re-subscribes every topic itself after a reconnect
            # (Bybit then sends fresh snapshots); ingest counts it and marks the books.
            ws._handler_reconnect = self.reconnected

    async def _connect(self) -> None:
        self._send_all_instruments_to_data_engine()
        for ws in self._ws_clients.values():
            try:  # the usual case: connected before the subscriptions are sent
                await ws.connect()
                self.slog.info("venue connected", url=ws._base_url)
            except Exception:  # keep trying in the background; the node starts meanwhile
                self.create_task(self._connect_ws(ws))

    async def _connect_ws(self, ws: Any) -> None:
        await self.connect_until_up(ws._base_url, ws.connect)
        if ws._subscriptions:  # made while the venue could not be reached
            await ws._subscribe_all()

    def _handle_orderbook(self, product_type: BybitProductType, raw: bytes, topic: str) -> None:
        self.parse_frame(raw, topic.rsplit(".", 1)[-1])

    def _handle_trade(self, product_type: BybitProductType, raw: bytes) -> None:
        self.parse_frame(raw, None)

    def _handle_ticker(self, product_type: BybitProductType, raw: bytes) -> None:
        self.parse_frame(raw, None)

    def _handle_ws_message(self, product_type: BybitProductType, raw: bytes) -> None:
        # Nautilus knows no liquidation topic (it would log it as unknown).
        if b"allLiquidation." in raw or b'"liquidation.' in raw:
            self.parse_frame(raw, None)
            return
        super()._handle_ws_message(product_type, raw)

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        await super()._subscribe_trade_ticks(command)
        if self.market != "bybit-linear":
            return
        ws = self._ws_clients[PRODUCT[self.market]]
        raw = self.raw_symbol_of(command.instrument_id)
        await ws.subscribe_tickers(raw)
        await ws._subscribe(f"allLiquidation.{raw}")

    def request_snapshot(self, instrument_id: InstrumentId) -> None:
        # Bybit sends a fresh ``snapshot`` when the topic is subscribed again.
        depth = self._depths.get(instrument_id)
        if depth is None:
            return
        ws = self._ws_clients[PRODUCT[self.market]]
        raw = self.raw_symbol_of(instrument_id)

        async def resubscribe() -> None:
            await ws.unsubscribe_order_book(raw, depth=depth)
            await ws.subscribe_order_book(raw, depth=depth)

        self.schedule_resync(instrument_id, resubscribe)


def client_config() -> BybitDataClientConfig:
    # Dummy credentials: the public WebSocket never uses them, but Nautilus reads keys
    # from the environment when none are given (and fails without them).
    return BybitDataClientConfig(
        api_key="public", api_secret="public", update_instruments_interval_mins=None
    )


def bybit_client(
    market: str,
    name: str,
    loop: asyncio.AbstractEventLoop,
    msgbus: MessageBus,
    cache: Cache,
    clock: LiveClock,
    provider: InstrumentProvider,
    urls: VenueUrls,
) -> LiveBybitClient:
    product = PRODUCT[market]
    return LiveBybitClient(
        loop=loop,
        client=BybitHttpClient(clock=clock, api_key="", api_secret="", base_url=urls.http),
        msgbus=msgbus,
        cache=cache,
        clock=clock,
        instrument_provider=provider,  # type: ignore[arg-type]
        product_types=[product],
        ws_base_urls={product: urls.ws},
        config=client_config(),
        name=name,
    )
