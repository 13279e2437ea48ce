"""What every live venue client of ingest shares, and the live TradingNode.

NautilusTrader's Binance and Bybit data clients do the venue work (connect, subscribe,
reconnect, ping/pong, REST). Ingest builds them directly rather than through their
factories (which insist on API keys even for public data, nautilus_trader issue #2621,
and load instruments over HTTP): a key-less HTTP client, a plain ``InstrumentProvider``
holding the instruments of the feed table, and the bases of ``C8_INGEST_VENUE_URLS``.
Thin subclasses (``venues/<venue>/client.py``) parse the frames with ingest's venue
parser and hand the records to Nautilus with their Nautilus objects (``Handoff``).

Added on top of Nautilus, the same for every venue (``LiveFeeds``):

* **Connecting** never gives up: a venue that cannot be reached is logged with its URL
  and the error (``venue unreachable``), counted (``connect_failures_total``), written
  to the feeds' streams as ``status: down`` (the reason names the URL and the error),
  and retried with back-off (1 s doubling to 30 s, jittered) until it answers.
* **Re-syncs** (a fresh book after a gap, a stall or a reconnect) go through
  ``ResyncBackoff``: at most one in flight per instrument, repeated ones backed off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.live.node import TradingNode
from nautilus_trader.model.identifiers import InstrumentId

from services.ingest import metrics
from services.ingest.feeds import Feed
from services.ingest.instruments import make_instrument
from services.ingest.nautilus_data import Handoff
from services.ingest.parsing import LineParser, ParseRejection, parser_for
from services.ingest.recorded import RawLine
from services.ingest.records import DERIVATIVE_TYPES, Quote, Status
from services.ingest.side_channel import SideChannel
from services.ingest.venue_limits import ResyncBackoff
from services.ingest.venues import VenueUrls

#: Connect retries: first after this, doubling, capped (jittered by up to a quarter).
CONNECT_RETRY_S = 1.0
CONNECT_RETRY_CAP_S = 30.0


def provider_for(feeds: list[Feed]) -> InstrumentProvider:
    """Instruments from the feed table: nothing is requested from the venue."""
    provider = InstrumentProvider()
    for feed in feeds:
        provider.add(make_instrument(feed))
    return provider


class LiveFeeds:
    """Mixin for a Nautilus live data client: parse frames, hand records on, re-sync."""

    _clock: LiveClock
    feeds: list[Feed]

    #: Seconds between open interest polls per symbol (venues that need polling); 0: off.
    oi_poll_s: float = 30.0

    def init_feeds(
        self, market: str, feeds: list[Feed], side: SideChannel, urls: VenueUrls, log: Any
    ) -> None:
        """``log``: the service's structured logger (Nautilus's own goes to stdout)."""
        self.market = market
        self.slog = log.bind(market=market)
        self.feeds = feeds
        self.urls = urls
        self._side = side
        self._parsers: dict[str, LineParser] = {f.raw_symbol: parser_for(f) for f in feeds}
        self._handoffs = {f.raw_symbol: Handoff(f, side, self._handle_data) for f in feeds}  # type: ignore[attr-defined]
        self._symbols = {f.instrument_id: f.symbol for f in feeds}
        self._raw_symbols = {f.instrument_id: f.raw_symbol for f in feeds}
        self._backoffs = {f.instrument_id: ResyncBackoff() for f in feeds}
        self._unreachable: str | None = None
        for feed in feeds:
            side.on_resync(
                feed.instrument_id,
                functools.partial(self.request_snapshot, InstrumentId.from_str(feed.instrument_id)),
            )

    def request_snapshot(self, instrument_id: InstrumentId) -> None:
        """Re-sync one instrument's book (venue specific)."""
        raise NotImplementedError

    def raw_symbol_of(self, instrument_id: InstrumentId) -> str:
        return self._raw_symbols[instrument_id.value]

    # -- frames -> records ---------------------------------------------------------------

    def parse_frame(self, raw: bytes, raw_symbol: str | None) -> None:
        """Parse one WebSocket frame and hand its records on; count a rejection.

        ``raw_symbol``: the frame's symbol when the caller knows it, else every feed's
        parser is tried (a shared connection carries several symbols).
        """
        candidates = [raw_symbol] if raw_symbol in self._parsers else list(self._parsers)
        line = RawLine(self._clock.timestamp_ns(), raw, 0)
        last: ParseRejection | None = None
        for symbol in candidates:
            try:
                records = self._parsers[symbol].parse_all(line)
            except ParseRejection as exc:
                last = exc
                if exc.reason in ("unknown_stream", "wrong_symbol"):
                    continue  # another feed's frame
                break
            handoff = self._handoffs[symbol]
            for record in records:
                if type(record) in DERIVATIVE_TYPES:
                    self._side.direct(handoff.feed.instrument_id, record)  # type: ignore[arg-type]
                elif type(record) is not Quote:
                    handoff(record)  # type: ignore[arg-type]
            return
        reason = last.reason if last else "unknown_stream"
        metrics.REJECTIONS.labels(self._symbols_of(raw_symbol), reason).inc()
        self.slog.warning(
            "venue message rejected",
            symbol=self._symbols_of(raw_symbol),
            reason=reason,
            frame=raw[:200].decode(errors="replace"),
        )

    def hand_on(self, raw_symbol: str, records: list[Any]) -> None:
        """Records from outside the WebSocket (a REST snapshot) for one feed."""
        handoff = self._handoffs[raw_symbol]
        for record in records:
            handoff(record)

    def _symbols_of(self, raw_symbol: str | None) -> str:
        for feed in self.feeds:
            if feed.raw_symbol == raw_symbol:
                return feed.symbol
        return "?"

    # -- re-syncs ----------------------------------------------------------------------

    def schedule_resync(
        self,
        instrument_id: InstrumentId,
        action: Callable[[], Awaitable[None]],
        first_sync: bool = False,
    ) -> bool:
        """Run one re-sync of ``instrument_id`` after its back-off; False if one is pending.

        ``first_sync``: the book's first snapshot after subscribing, at once and not
        counted as a re-sync (the first real re-sync after it starts at once too).
        """
        iid = instrument_id.value
        backoff = self._backoffs.get(iid)
        if backoff is None or backoff.in_flight:
            return False
        backoff.in_flight = True
        delay = 0.0 if first_sync else backoff.next_delay()
        symbol = self._symbols[iid]

        async def run() -> None:
            try:
                if delay > 0:
                    self.slog.warning("re-sync backed off", symbol=symbol, delay_s=round(delay, 1))
                    await asyncio.sleep(delay)
                if not first_sync:
                    metrics.RESUBSCRIBES.labels(self.market, symbol).inc()
                await action()
            finally:
                backoff.in_flight = False

        self.create_task(run())  # type: ignore[attr-defined]
        return True

    async def reconnected(self) -> None:
        """Nautilus re-established a dropped connection (and re-subscribed): count it and
        re-sync every book (what the venue sent meanwhile is lost)."""
        metrics.RECONNECTS.labels(self.market).inc()
        self.slog.warning("venue reconnected; re-syncing every book")
        now = time.time_ns()
        reason = f"venue reconnected ({self.market}); re-sync from a fresh snapshot"
        for feed in self.feeds:
            self._side.announce(feed.instrument_id, Status("resync", reason, now, now))

    # -- connecting --------------------------------------------------------------------

    async def connect_until_up(self, url: str, connect: Callable[[], Awaitable[None]]) -> None:
        """``connect()`` until it succeeds, backing off; tell the feeds while it fails."""
        delay = CONNECT_RETRY_S
        while True:
            try:
                await connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"venue unreachable: {url}: {_describe(exc)}"
                metrics.CONNECT_FAILURES.labels(self.market).inc()
                self.slog.error(
                    "venue unreachable", url=url, error=_describe(exc), retry_in_s=round(delay)
                )
                self._tell_unreachable(reason)
                await asyncio.sleep(delay * (1 + random.random() / 4))
                delay = min(delay * 2, CONNECT_RETRY_CAP_S)
                continue
            self.slog.info("venue connected", url=url)
            self._unreachable = None
            return

    def _tell_unreachable(self, reason: str) -> None:
        """Write ``status: down`` to every feed of this client once per reason."""
        if reason == self._unreachable:
            return
        self._unreachable = reason
        now = time.time_ns()
        for feed in self.feeds:
            self._side.announce(feed.instrument_id, Status("down", reason, now, now))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def make_live_factory(
    market: str,
    feeds: list[Feed],
    side: SideChannel,
    urls: VenueUrls,
    log: Any,
    oi_poll_s: float = LiveFeeds.oi_poll_s,
) -> type[LiveDataClientFactory]:
    """The Nautilus factory of one market's live client (``binance-usdm`` ... ``bybit-spot``)."""

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
            if market.startswith("binance"):
                from services.ingest.venues.binance.client import binance_client

                client = binance_client(market, name, loop, msgbus, cache, clock, provider, urls)
            else:
                from services.ingest.venues.bybit.client import bybit_client

                client = bybit_client(market, name, loop, msgbus, cache, clock, provider, urls)
            client.oi_poll_s = oi_poll_s
            client.init_feeds(market, feeds, side, urls, log)
            return client

    return LiveFactory


def client_name(market: str) -> str:
    """The Nautilus client id of a market's client (``binance-usdm`` -> ``BINANCE_USDM``)."""
    return market.upper().replace("-", "_")


def live_client_groups(feeds: list[Feed]) -> dict[str, list[Feed]]:
    """One Nautilus data client per market (``binance-usdm``, ``bybit-linear``, ...)."""
    groups: dict[str, list[Feed]] = {}
    for feed in feeds:
        groups.setdefault(feed.feed_dir, []).append(feed)
    return groups


def client_config(market: str) -> Any:
    if market.startswith("binance"):
        from services.ingest.venues.binance.client import client_config as binance_config

        return binance_config(market)
    from services.ingest.venues.bybit.client import client_config as bybit_config

    return bybit_config()


def add_live_clients(
    node: TradingNode,
    feeds: list[Feed],
    side: SideChannel,
    urls: dict[str, VenueUrls],
    log: Any,
    oi_poll_s: float = LiveFeeds.oi_poll_s,
) -> dict[str, str]:
    """Register one live client factory per market; instrument id -> client name."""
    client_ids: dict[str, str] = {}
    for market, group in live_client_groups(feeds).items():
        name = client_name(market)
        factory = make_live_factory(market, group, side, urls[market], log, oi_poll_s)
        node.add_data_client_factory(name, factory)
        client_ids.update({f.instrument_id: name for f in group})
    return client_ids


async def cancel_quietly(task: asyncio.Task[Any] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
