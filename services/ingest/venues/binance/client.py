"""Binance live market data through NautilusTrader's Binance data clients (no API keys).

What ingest adds to Nautilus's ``BinanceFuturesDataClient`` / ``BinanceSpotDataClient``:

* frames are parsed with ingest's Binance parser (the same as for recordings) and handed
  on with their records (``venues/live.py``);
* **REST depth snapshots** are fetched by ingest (``GET <http base>/fapi/v1/depth``,
  ``/dapi/v1/depth``, ``/api/v3/depth``, ``limit=1000``; ``venues/rest.py``), parsed
  like a recorded snapshot line, never awaited inside a subscription: diffs flow
  meanwhile and the feed core's sequencer buffers them. Every request spends its
  documented weight from a ``RestBudget`` (half the venue's per-IP limit: USDⓈ-M and
  COIN-M 2,400/min, spot 6,000/min, so a standby process fits beside); an HTTP 429 or
  418 stops every request to that host for its ``Retry-After``; other failures retry
  with back-off (1 s doubling to 30 s);
* **pacing**: every message sent on a connection (subscribe, unsubscribe) waits for a
  slot of 4 per second (Binance: 5 incoming messages/s per connection on spot, 10 on
  futures; more drops the connection); subscriptions made while one waits go out
  together in one message; connection attempts are paced process-wide
  to 250 per 5 minutes (Binance: 300 per 5 minutes per IP). Nautilus opens one
  connection per 200 streams (Binance futures: at most 200 per connection; spot 1024);
* **connecting** retries until the venue answers (``LiveFeeds.connect_until_up``): the
  Nautilus client would otherwise give up after a failed first connect;
* a reconnect (Nautilus's Rust client reconnects and re-subscribes by itself) is counted
  and re-syncs every book: ``status: resync``, then a fresh snapshot;
* **derivatives** (futures only): with the trades, each symbol also subscribes
  ``<sym>@markPrice@1s`` (mark, index, funding rate, next funding time) and
  ``<sym>@forceOrder`` (liquidations), and its open interest is polled over REST
  (``GET /fapi/v1/openInterest`` / ``/dapi/v1/openInterest``, weight 1, every
  ``C8_INGEST_OPEN_INTEREST_POLL_S``, spent from the same ``RestBudget`` as the depth
  snapshots; symbols are staggered over the interval).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.adapters.binance.futures.data import BinanceFuturesDataClient
from nautilus_trader.adapters.binance.http.client import BinanceHttpClient
from nautilus_trader.adapters.binance.spot.data import BinanceSpotDataClient
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.data.messages import SubscribeTradeTicks
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest import metrics
from services.ingest.feeds import Feed
from services.ingest.parsing import ParseRejection
from services.ingest.venue_limits import (
    CONNECTION_WINDOW_S,
    CONNECTIONS_PER_WINDOW,
    MESSAGES_PER_SECOND,
    RestBudget,
    SlidingWindowLimiter,
)
from services.ingest.venues import VenueUrls
from services.ingest.venues.binance.parsing import BinanceParser
from services.ingest.venues.live import LiveFeeds, _describe
from services.ingest.venues.rest import PublicRest, VenueHttpError

ACCOUNT = {
    "binance-usdm": BinanceAccountType.USDT_FUTURES,
    "binance-coinm": BinanceAccountType.COIN_FUTURES,
    "binance-spot": BinanceAccountType.SPOT,
}
DEPTH_PATH = {
    "binance-usdm": "/fapi/v1/depth",
    "binance-coinm": "/dapi/v1/depth",
    "binance-spot": "/api/v3/depth",
}
#: The venue's request-weight limit per IP and minute, and the share ingest spends.
WEIGHT_LIMIT = {"binance-usdm": 2400, "binance-coinm": 2400, "binance-spot": 6000}
WEIGHT_SHARE = 0.5
OPEN_INTEREST_PATH = {
    "binance-usdm": "/fapi/v1/openInterest",
    "binance-coinm": "/dapi/v1/openInterest",
}
#: Request weight of ``GET openInterest`` (USDⓈ-M and COIN-M docs).
OPEN_INTEREST_WEIGHT = 1
DEPTH_LIMIT = 1000
RETRY_S, RETRY_CAP_S = 1.0, 30.0


def depth_weight(market: str, limit: int) -> int:
    """Request weight of ``GET depth?limit=N`` (Binance API docs, 2024)."""
    if market == "binance-spot":
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


class PublicBinanceHttpClient(BinanceHttpClient):
    """Binance HTTP client for public endpoints: no key, no key header (what Nautilus's
    data client is built with; ingest's own REST calls go through ``PublicRest``)."""

    def __init__(self, clock: LiveClock, base_url: str) -> None:
        super().__init__(clock=clock, api_key="", api_secret="", base_url=base_url)
        self._headers.pop("X-MBX-APIKEY", None)


#: Binance: connection attempts per IP, shared by every client of the process.
_CONNECTS = SlidingWindowLimiter(CONNECTIONS_PER_WINDOW, CONNECTION_WINDOW_S)


class _BinanceLive(LiveFeeds):
    """Binance diffs/trades parsed by ingest; snapshots over REST, on demand."""

    _ws_client: Any
    _book_depths: dict[InstrumentId, int | None]

    def init_feeds(
        self, market: str, feeds: list[Feed], side: Any, urls: VenueUrls, log: Any
    ) -> None:
        super().init_feeds(market, feeds, side, urls, log)
        budget = RestBudget(int(WEIGHT_LIMIT[market] * WEIGHT_SHARE))
        self.rest = PublicRest(urls.http, budget, weight_header="X-MBX-USED-WEIGHT-1M")
        self._install_limits()
        self._derivatives = market in OPEN_INTEREST_PATH
        self._oi_polls: dict[str, asyncio.Task[None]] = {}
        if self._derivatives:
            self._ws_handlers["@forceOrder"] = self._handle_force_order  # type: ignore[attr-defined]

    async def _disconnect(self) -> None:
        for task in self._oi_polls.values():
            task.cancel()
        self._oi_polls.clear()
        await super()._disconnect()  # type: ignore[misc]
        await self.rest.close()

    # -- WebSocket ----------------------------------------------------------------------

    def _handle_book_diff_update(self, raw: bytes) -> None:
        self.parse_frame(raw, None)

    def _handle_trade(self, raw: bytes) -> None:
        self.parse_frame(raw, None)

    def _handle_mark_price(self, raw: bytes) -> None:
        self.parse_frame(raw, None)

    def _handle_force_order(self, raw: bytes) -> None:
        self.parse_frame(raw, None)

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        await super()._subscribe_trade_ticks(command)  # type: ignore[misc]
        if not self._derivatives:
            return
        raw_symbol = self.raw_symbol_of(command.instrument_id)
        await self._ws_client.subscribe_mark_price(command.instrument_id.symbol.value, 1000)
        await self._ws_client._subscribe(f"{raw_symbol.lower()}@forceOrder")
        if self.oi_poll_s > 0 and raw_symbol not in self._oi_polls:
            offset = len(self._oi_polls) * self.oi_poll_s / max(len(self.feeds), 1)
            self._oi_polls[raw_symbol] = self.create_task(  # type: ignore[attr-defined]
                self._poll_open_interest(raw_symbol, offset % self.oi_poll_s)
            )

    async def _poll_open_interest(self, raw_symbol: str, offset_s: float) -> None:
        """Every ``oi_poll_s``: ``GET openInterest``; failures are logged and skipped (the
        next poll is the retry), a 429/418 makes the budget wait like for depth."""
        parser = self._parsers[raw_symbol]
        assert isinstance(parser, BinanceParser)
        path = OPEN_INTEREST_PATH[self.market]
        await asyncio.sleep(offset_s)
        while True:
            try:
                body = await self.rest.get(path, {"symbol": raw_symbol}, OPEN_INTEREST_WEIGHT)
                record = parser.open_interest(body, self._clock.timestamp_ns())
            except asyncio.CancelledError:
                raise
            except ParseRejection as exc:
                symbol = self._symbols_of(raw_symbol)
                metrics.REJECTIONS.labels(symbol, exc.reason).inc()
                self.slog.warning("open interest unusable", symbol=symbol, error=str(exc))
            except Exception as exc:  # HTTP error, refused, timed out: the next poll retries
                self.slog.warning(
                    "open interest poll failed", symbol=raw_symbol, error=_describe(exc)
                )
            else:
                self._side.direct(self._handoffs[raw_symbol].feed.instrument_id, record)
            await asyncio.sleep(self.oi_poll_s)

    def _install_limits(self) -> None:
        """Pace what Nautilus's WebSocket client sends; retry its connects."""
        ws = self._ws_client
        limiters: dict[int, SlidingWindowLimiter] = {}
        send = ws._send
        connect = ws._connect_client

        pending: dict[int, list[str]] = {}

        async def paced_send(client_id: int, msg: dict[str, Any]) -> None:
            limiter = limiters.setdefault(client_id, SlidingWindowLimiter(MESSAGES_PER_SECOND, 1.0))
            if msg.get("method") == "SUBSCRIBE":
                # Nautilus sends one SUBSCRIBE per stream; streams asked for while one
                # waits for its slot go out together in it (hundreds of symbols
                # subscribe in a few messages instead of one per 250 ms).
                streams = pending.setdefault(client_id, [])
                streams.extend(msg["params"])
                if len(streams) > len(msg["params"]):
                    return  # an earlier call is waiting to send them
                await limiter.acquire()
                msg = {**msg, "params": pending.pop(client_id)}
            else:
                await limiter.acquire()
            await send(client_id, msg)

        async def resilient_connect(client_id: int, streams: list[str]) -> None:
            url = f"{self.urls.ws}/stream?streams={streams[0]}"

            async def attempt() -> None:
                await _CONNECTS.acquire()
                await connect(client_id, streams)

            await self.connect_until_up(url, attempt)

        ws._send = paced_send
        ws._connect_client = resilient_connect

    async def _reconnect(self) -> None:
        """Nautilus calls this after a WebSocket reconnect."""
        await self.reconnected()

    # -- REST snapshots ------------------------------------------------------------------

    async def _order_book_snapshot_then_deltas(self, instrument_id: InstrumentId) -> None:
        # Called by Nautilus when the book is subscribed: fetch in the background (diffs
        # are not held back; the sequencer buffers them until the snapshot arrives).
        fetch = functools.partial(self._fetch_snapshot, instrument_id)
        self.schedule_resync(instrument_id, fetch, first_sync=True)

    def request_snapshot(self, instrument_id: InstrumentId) -> None:
        self.schedule_resync(instrument_id, functools.partial(self._fetch_snapshot, instrument_id))

    async def _fetch_snapshot(self, instrument_id: InstrumentId) -> None:
        raw_symbol = self.raw_symbol_of(instrument_id)
        parser = self._parsers[raw_symbol]
        assert isinstance(parser, BinanceParser)
        path = DEPTH_PATH[self.market]
        url = f"{self.urls.http}{path}"
        params = {"symbol": raw_symbol, "limit": str(DEPTH_LIMIT)}
        weight = depth_weight(self.market, DEPTH_LIMIT)
        delay = RETRY_S
        while True:
            try:
                body = await self.rest.get(path, params, weight)
                snapshot = parser.snapshot(body, self._clock.timestamp_ns(), source="rest")
            except VenueHttpError as exc:
                if exc.status in (418, 429):  # the budget now waits for Retry-After
                    self.slog.error(
                        "venue rate limit: every REST request of the market waits",
                        url=url,
                        status=exc.status,
                        retry_after_s=exc.retry_after_s,
                    )
                    continue
                self.slog.warning(
                    "depth snapshot failed; retrying", symbol=raw_symbol, error=str(exc)
                )
            except ParseRejection as exc:
                self.slog.warning(
                    "depth snapshot unusable; retrying", symbol=raw_symbol, error=str(exc)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no answer: refused, reset, timed out
                self.slog.error("venue unreachable", url=url, error=_describe(exc))
                self._tell_unreachable(f"venue unreachable: {url}: {_describe(exc)}")
            else:
                self._unreachable = None
                self.hand_on(raw_symbol, [snapshot])
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP_S)


class LiveBinanceFuturesClient(_BinanceLive, BinanceFuturesDataClient):
    pass


class LiveBinanceSpotClient(_BinanceLive, BinanceSpotDataClient):
    pass


def client_config(market: str) -> BinanceDataClientConfig:
    return BinanceDataClientConfig(
        account_type=ACCOUNT[market], update_instruments_interval_mins=None
    )


def binance_client(
    market: str,
    name: str,
    loop: asyncio.AbstractEventLoop,
    msgbus: MessageBus,
    cache: Cache,
    clock: LiveClock,
    provider: InstrumentProvider,
    urls: VenueUrls,
) -> _BinanceLive:
    account = ACCOUNT[market]
    cls = LiveBinanceSpotClient if account.is_spot_or_margin else LiveBinanceFuturesClient
    return cls(
        loop=loop,
        client=PublicBinanceHttpClient(clock, urls.http),
        msgbus=msgbus,
        cache=cache,
        clock=clock,
        instrument_provider=provider,
        base_url_ws=urls.ws,
        config=client_config(market),
        account_type=account,
        name=name,
    )
