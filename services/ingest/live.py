"""Live mode: Nautilus's own Binance / Bybit data clients, public data, no API keys.

Nautilus's factories insist on API keys (they read ``BINANCE_API_KEY`` etc. from the
environment even for public market data, nautilus_trader issue #2621) and load
instruments over HTTP. Here the clients are constructed directly instead:

* an HTTP client with empty credentials (Binance: and no ``X-MBX-APIKEY`` header) —
  ingest only calls public endpoints (the REST depth snapshot);
* a plain ``InstrumentProvider`` holding the instruments built from the feed table
  (``instruments.py``), so nothing is loaded from the venue;
* thin subclasses whose WebSocket handlers parse with the same ``LineParser`` as the
  replay (Nautilus's schemas) and push the venue ids onto the ``SideChannel`` before
  handing the same Nautilus objects on, exactly like ``ReplayDataClient``.

Book sync: diffs flow straight to the Actor, whose ``BookSequencer`` buffers them
until the REST snapshot arrives (so Nautilus's own buffer is not used); when the
sequencer finds a gap the Actor asks the client for a fresh snapshot (Binance: REST
depth; Bybit: unsubscribe + subscribe, which makes Bybit send a snapshot). Re-syncs,
reconnects and venue message rates are governed by ``venue_limits.py`` (back-off with
jitter, one re-sync in flight per instrument, paced subscribe messages and connects)
and counted in ``context8_ingest_reconnects_total`` / ``context8_ingest_resubscribes_total``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nautilus_trader.adapters.binance.common.enums import BinanceAccountType
from nautilus_trader.adapters.binance.common.urls import get_http_base_url, get_ws_base_url
from nautilus_trader.adapters.binance.config import BinanceDataClientConfig
from nautilus_trader.adapters.binance.futures.data import BinanceFuturesDataClient
from nautilus_trader.adapters.binance.http.client import BinanceHttpClient
from nautilus_trader.adapters.binance.spot.data import BinanceSpotDataClient
from nautilus_trader.adapters.bybit.common.enums import BybitProductType
from nautilus_trader.adapters.bybit.common.urls import (
    get_http_base_url as bybit_http_base_url,
)
from nautilus_trader.adapters.bybit.common.urls import get_ws_base_url_public
from nautilus_trader.adapters.bybit.config import BybitDataClientConfig
from nautilus_trader.adapters.bybit.data import BybitDataClient
from nautilus_trader.adapters.bybit.http.client import BybitHttpClient
from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest import metrics
from services.ingest.actor import IngestActor
from services.ingest.feeds import (
    FEED_DIRS,
    KNOWN_PRECISIONS,
    Feed,
    report_symbol,
)
from services.ingest.instruments import make_instrument
from services.ingest.parsing import BookMsg, LineParser, ParseRejection, QuoteMsg, VenueMsg
from services.ingest.recorded import RawLine
from services.ingest.settings import Settings
from services.ingest.side_channel import SideChannel
from services.ingest.venue_limits import (
    CONNECTION_WINDOW_S,
    CONNECTIONS_PER_WINDOW,
    MESSAGES_PER_SECOND,
    ResyncBackoff,
    SlidingWindowLimiter,
)
from services.ingest.writer import StreamWriter
from shared.errors import ConfigError

BINANCE_ACCOUNT = {
    "usdm": BinanceAccountType.USDT_FUTURES,
    "coinm": BinanceAccountType.COIN_FUTURES,
    "spot": BinanceAccountType.SPOT,
}
BYBIT_PRODUCT = {"linear": BybitProductType.LINEAR, "spot": BybitProductType.SPOT}


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


def provider_for(feeds: list[Feed]) -> InstrumentProvider:
    """Instruments from the feed table: nothing is requested from the venue."""
    provider = InstrumentProvider()
    for feed in feeds:
        provider.add(make_instrument(feed))
    return provider


class PublicBinanceHttpClient(BinanceHttpClient):
    """Binance HTTP client for public endpoints: no key, no key header."""

    def __init__(self, clock: LiveClock, base_url: str) -> None:
        super().__init__(clock=clock, api_key="", api_secret="", base_url=base_url)
        self._headers.pop("X-MBX-APIKEY", None)


#: Binance: connection attempts per IP, shared by every client of the process.
_BINANCE_CONNECTS = SlidingWindowLimiter(CONNECTIONS_PER_WINDOW, CONNECTION_WINDOW_S)


class _SideChannelMixin:
    """Parse WebSocket messages with the shared ``LineParser``; feed the side channel."""

    _clock: LiveClock
    _log: Any
    _side: SideChannel
    _parsers: dict[str, LineParser]  # venue symbol -> parser
    _venue_name: str = ""

    def _init_side(self, feeds: list[Feed], side: SideChannel) -> None:
        self._side = side
        self._parsers = {feed.raw_symbol: LineParser(feed) for feed in feeds}
        self._symbols = {feed.instrument_id: feed.symbol for feed in feeds}
        self._venue_name = feeds[0].venue if feeds else ""
        self._backoffs = {feed.instrument_id: ResyncBackoff() for feed in feeds}
        self._install_limits()

    def _install_limits(self) -> None:
        """Pace what the Nautilus WebSocket clients send (per venue)."""

    def _schedule_resync(
        self, instrument_id: InstrumentId, action: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run one re-sync of ``instrument_id`` after its back-off; False if one is pending."""
        iid = instrument_id.value
        backoff = self._backoffs.get(iid)
        if backoff is None or backoff.in_flight:
            return False
        backoff.in_flight = True
        delay = backoff.next_delay()
        symbol = self._symbols[iid]

        async def run() -> None:
            try:
                if delay > 0:
                    self._log.warning(f"Re-sync of {iid} in {delay:.1f} s (back-off)")
                    await asyncio.sleep(delay)
                metrics.RESUBSCRIBES.labels(self._venue_name, symbol).inc()
                await action()
            finally:
                backoff.in_flight = False

        self.create_task(run())  # type: ignore[attr-defined]
        return True

    async def _count_reconnect(self) -> None:
        metrics.RECONNECTS.labels(self._venue_name).inc()
        self._log.warning(f"{self._venue_name} WebSocket reconnected")

    def _parse_ws(self, raw: bytes, symbol_hint: str | None) -> None:
        """Parse one WebSocket message and forward what it holds; count a rejection."""
        if symbol_hint in self._parsers:
            parsers = [self._parsers[symbol_hint]]
        else:
            parsers = list(self._parsers.values())
        line = RawLine(self._clock.timestamp_ns(), raw, 0)
        last: ParseRejection | None = None
        for parser in parsers:
            try:
                msgs = parser.parse_all(line)
            except ParseRejection as exc:
                last = exc
                if exc.reason in ("unknown_stream", "wrong_symbol"):
                    continue  # another feed's message on a shared connection
                break
            self._forward(parser.feed, msgs)
            return
        reason = last.reason if last else "unknown_stream"
        metrics.REJECTIONS.labels(symbol_hint or "?", reason).inc()
        self._log.warning(f"Rejected venue message ({reason}): {raw[:200]!r}")

    def _forward(self, feed: Feed, msgs: list[VenueMsg]) -> None:
        for msg in msgs:
            if isinstance(msg, QuoteMsg):
                continue
            self._side.push(feed.instrument_id, msg)
            obj = msg.deltas if isinstance(msg, BookMsg) else msg.tick
            if obj is not None:
                self._handle_data(obj)  # type: ignore[attr-defined]


class _BinanceLive(_SideChannelMixin):
    """Binance diffs/trades through the side channel; snapshots via REST on demand."""

    _http_market: Any
    _book_depths: dict[InstrumentId, int | None]

    def _handle_book_diff_update(self, raw: bytes) -> None:
        self._parse_ws(raw, None)

    def _handle_trade(self, raw: bytes) -> None:
        self._parse_ws(raw, None)

    def _install_limits(self) -> None:
        ws = getattr(self, "_ws_client", None)
        if ws is None:
            return
        limiters: dict[int, SlidingWindowLimiter] = {}
        send = ws._send
        connect = ws._connect_client

        async def paced_send(client_id: int, msg: dict[str, Any]) -> None:
            limiter = limiters.setdefault(client_id, SlidingWindowLimiter(MESSAGES_PER_SECOND, 1.0))
            await limiter.acquire()
            await send(client_id, msg)

        async def paced_connect(client_id: int, streams: list[str]) -> None:
            await _BINANCE_CONNECTS.acquire()
            await connect(client_id, streams)

        ws._send = paced_send
        ws._connect_client = paced_connect

    async def _reconnect(self) -> None:
        """Nautilus calls this after a WebSocket reconnect: count it, re-sync every book."""
        await self._count_reconnect()
        for instrument_id in list(self._book_depths):
            self.request_snapshot(instrument_id)

    async def _order_book_snapshot_then_deltas(self, instrument_id: InstrumentId) -> None:
        # Diffs are not held back here: the Actor's sequencer buffers them until this
        # snapshot arrives and drops those it covers.
        depth = self._book_depths.get(instrument_id) or 1000
        delay = 1.0
        while True:
            now = self._clock.timestamp_ns()
            try:
                snapshot = await self._http_market.request_order_book_snapshot(
                    instrument_id=instrument_id, limit=depth, ts_init=now
                )
                break
            except Exception as exc:  # HTTP or venue error: the book waits, retry
                self._log.warning(f"Depth snapshot for {instrument_id} failed ({exc!r}); retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        last = snapshot.sequence
        feed = next(p.feed for p in self._parsers.values() if p.instrument_id == instrument_id)
        self._forward(feed, [BookMsg(True, last, last, last, now, now, snapshot, rest=True)])

    def request_snapshot(self, instrument_id: InstrumentId) -> None:
        self._schedule_resync(
            instrument_id,
            functools.partial(self._order_book_snapshot_then_deltas, instrument_id),
        )


class LiveBinanceFuturesClient(_BinanceLive, BinanceFuturesDataClient):
    pass


class LiveBinanceSpotClient(_BinanceLive, BinanceSpotDataClient):
    pass


class LiveBybitClient(_SideChannelMixin, BybitDataClient):
    """Bybit order book / trades through the side channel (snapshots come over WS)."""

    def _handle_orderbook(self, product_type: BybitProductType, raw: bytes, topic: str) -> None:
        self._parse_ws(raw, topic.rsplit(".", 1)[-1])

    def _handle_trade(self, product_type: BybitProductType, raw: bytes) -> None:
        self._parse_ws(raw, None)

    def _install_limits(self) -> None:
        for ws in getattr(self, "_ws_clients", {}).values():
            limiter = SlidingWindowLimiter(MESSAGES_PER_SECOND, 1.0)
            send = ws._send

            async def paced_send(
                msg: dict[str, Any],
                send: Any = send,
                limiter: SlidingWindowLimiter = limiter,
            ) -> None:
                await limiter.acquire()
                await send(msg)

            ws._send = paced_send
            # Nautilus's Bybit client re-subscribes every topic itself after a reconnect
            # (Bybit then sends fresh snapshots); ingest only counts it.
            ws._handler_reconnect = self._count_reconnect

    def request_snapshot(self, instrument_id: InstrumentId) -> None:
        # Bybit sends a fresh ``snapshot`` when the topic is subscribed again.
        depth = self._depths.get(instrument_id)
        if depth is None:
            return
        product = BYBIT_PRODUCT["linear" if "LINEAR" in instrument_id.symbol.value else "spot"]
        raw = instrument_id.symbol.value.rsplit("-", 1)[0]

        async def resubscribe() -> None:
            ws = self._ws_clients[product]
            await ws.unsubscribe_order_book(raw, depth=depth)
            await ws.subscribe_order_book(raw, depth=depth)

        self._schedule_resync(instrument_id, resubscribe)


@dataclass(frozen=True)
class LiveClientClasses:
    """The client classes used per venue (a test swaps in network-free subclasses)."""

    binance_futures: type[LiveBinanceFuturesClient] = LiveBinanceFuturesClient
    binance_spot: type[LiveBinanceSpotClient] = LiveBinanceSpotClient
    bybit: type[LiveBybitClient] = LiveBybitClient


def make_live_factory(
    kind: str,
    feeds: list[Feed],
    side: SideChannel,
    classes: LiveClientClasses | None = None,
) -> type[LiveDataClientFactory]:
    """Factory of one live client: ``binance-usdm|coinm|spot`` or ``bybit``."""

    chosen = classes or LiveClientClasses()

    class LiveFactory(LiveDataClientFactory):
        @staticmethod
        def create(
            loop: asyncio.AbstractEventLoop,
            name: str,
            config: Any,
            msgbus: MessageBus,
            cache: Cache,
            clock: LiveClock,
        ) -> Any:
            provider = provider_for(feeds)
            client: Any
            if kind.startswith("binance"):
                account = BINANCE_ACCOUNT[kind.split("-", 1)[1]]
                http = PublicBinanceHttpClient(
                    clock, config.base_url_http or get_http_base_url(account, False, False)
                )
                cls = chosen.binance_spot if account.is_spot_or_margin else chosen.binance_futures
                client = cls(
                    loop=loop,
                    client=http,
                    msgbus=msgbus,
                    cache=cache,
                    clock=clock,
                    instrument_provider=provider,
                    base_url_ws=config.base_url_ws or get_ws_base_url(account, False, False),
                    config=config,
                    account_type=account,
                    name=name,
                )
            else:
                products = sorted({BYBIT_PRODUCT[f.market] for f in feeds}, key=lambda p: p.value)
                http_b = BybitHttpClient(
                    clock=clock,
                    api_key="",
                    api_secret="",
                    base_url=config.base_url_http or bybit_http_base_url(False, False),
                )
                client = chosen.bybit(
                    loop=loop,
                    client=http_b,
                    msgbus=msgbus,
                    cache=cache,
                    clock=clock,
                    instrument_provider=provider,  # type: ignore[arg-type]
                    product_types=products,
                    ws_base_urls={p: get_ws_base_url_public(p, False, False) for p in products},
                    config=config,
                    name=name,
                )
            client._init_side(feeds, side)
            for feed in feeds:
                side.on_resync(
                    feed.instrument_id,
                    functools.partial(
                        client.request_snapshot, InstrumentId.from_str(feed.instrument_id)
                    ),
                )
            return client

    return LiveFactory


def live_client_groups(feeds: list[Feed]) -> dict[str, list[Feed]]:
    """One Nautilus data client per Binance market and one for Bybit."""
    groups: dict[str, list[Feed]] = {}
    for feed in feeds:
        kind = f"binance-{feed.market}" if feed.venue == "BINANCE" else "bybit"
        groups.setdefault(kind, []).append(feed)
    return groups


def client_config(kind: str) -> Any:
    if kind.startswith("binance"):
        return BinanceDataClientConfig(
            account_type=BINANCE_ACCOUNT[kind.split("-", 1)[1]],
            update_instruments_interval_mins=None,
        )
    # Dummy credentials: the public WebSocket never uses them, but Nautilus reads keys
    # from the environment when none are given (and fails without them).
    return BybitDataClientConfig(
        api_key="public", api_secret="public", update_instruments_interval_mins=None
    )


def build_live_node(
    settings: Settings,
    feeds: list[Feed],
    side: SideChannel,
    writer: StreamWriter,
    log: Any,
    classes: LiveClientClasses | None = None,
) -> tuple[TradingNode, IngestActor]:
    """A TradingNode with one Nautilus venue client per market and the same Actor."""
    from services.ingest.node import add_actor, node_config

    groups = live_client_groups(feeds)
    names = {kind: kind.upper().replace("-", "_") for kind in groups}
    node = TradingNode(
        node_config(settings, {names[k]: client_config(k) for k in groups}),
        loop=asyncio.get_running_loop(),
    )
    for kind, group in groups.items():
        node.add_data_client_factory(names[kind], make_live_factory(kind, group, side, classes))
    client_ids = {f.instrument_id: names[k] for k, group in groups.items() for f in group}
    actor = add_actor(node, settings, client_ids, "wall", feeds, side, writer, log)
    return node, actor
