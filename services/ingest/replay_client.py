"""Replay data client: recorded venue files -> Nautilus, paced on exchange event time.

A ``LiveMarketDataClient`` like Nautilus's own Binance/Bybit clients, so the node and
the Actor are the same in replay and live mode. Each feed's files are read in date
order and parsed with Nautilus's venue schemas (``LineParser``); feeds are merged in
exchange-time order with ``heapq.merge`` (the merge key is each feed's running maximum
event time, so every input is sorted and a feed's own order is never changed).
Replay starts once the Actor has subscribed to every feed. Each record is handed to
Nautilus as the live clients hand theirs (``nautilus_data.Handoff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Iterator
from typing import Any

from nautilus_trader.cache.cache import Cache
from nautilus_trader.common.component import LiveClock, MessageBus
from nautilus_trader.common.providers import InstrumentProvider
from nautilus_trader.config import LiveDataClientConfig
from nautilus_trader.data.messages import (
    SubscribeOrderBook,
    SubscribeTradeTicks,
    UnsubscribeOrderBook,
    UnsubscribeTradeTicks,
)
from nautilus_trader.live.data_client import LiveMarketDataClient
from nautilus_trader.live.factories import LiveDataClientFactory
from nautilus_trader.model.identifiers import ClientId

from services.ingest import metrics
from services.ingest.feeds import Feed
from services.ingest.instruments import make_instrument
from services.ingest.nautilus_data import Handoff
from services.ingest.parsing import ParseRejection, parser_for
from services.ingest.recorded import RecordedFile
from services.ingest.records import Record
from services.ingest.side_channel import SideChannel

REPLAY_CLIENT_ID = "REPLAY"
#: An exchange-time pause longer than this is skipped rather than slept through
#: (e.g. between two recordings of different days replayed back to back).
MAX_IDLE_S = 60.0
_YIELD_EVERY = 200
#: bookTicker lines are counted into the metric in steps of this (a lock per line costs).
_COUNT_EVERY = 256


class ReplayClientConfig(LiveDataClientConfig, frozen=True):
    """``speed``: factor over real time on exchange time; None = as fast as possible."""

    speed: float | None = 1.0


class ReplayHooks:
    """What the replay tells the rest of the service (set by the service shell)."""

    def __init__(
        self,
        on_end: Callable[[str], None],
        wait_for_room: Callable[[], Any] | None = None,
        log: Any = None,
        on_progress: Callable[[float, int, int, bool], None] | None = None,
    ) -> None:
        self.on_end = on_end
        self.wait_for_room = wait_for_room
        self.log = log
        #: (share of bytes read, newest event time ns, messages so far, final)
        self.on_progress = on_progress


class ReplayDataClient(LiveMarketDataClient):
    """Feeds recorded venue messages into Nautilus as its live clients would."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        msgbus: MessageBus,
        cache: Cache,
        clock: LiveClock,
        config: ReplayClientConfig,
        feeds: list[Feed],
        side: SideChannel,
        hooks: ReplayHooks,
    ) -> None:
        provider = InstrumentProvider()
        self._instruments = {feed.instrument_id: make_instrument(feed) for feed in feeds}
        for instrument in self._instruments.values():
            provider.add(instrument)
        super().__init__(
            loop=loop,
            client_id=ClientId(REPLAY_CLIENT_ID),
            venue=None,
            msgbus=msgbus,
            cache=cache,
            clock=clock,
            instrument_provider=provider,
            config=config,
        )
        self._feeds = feeds
        self._handoffs = [Handoff(feed, side, self._handle_data) for feed in feeds]
        self._speed = config.speed
        self._side = side
        self._hooks = hooks
        self._book_subs: set[str] = set()
        self._trade_subs: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._files: list[RecordedFile] = []
        self.finished = False

    # -- LiveMarketDataClient ----------------------------------------------------------

    async def _connect(self) -> None:
        for instrument in self._instruments.values():
            self._cache.add_instrument(instrument)

    async def _disconnect(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _subscribe_order_book_deltas(self, command: SubscribeOrderBook) -> None:
        self._book_subs.add(command.instrument_id.value)
        self._maybe_start()

    async def _subscribe_trade_ticks(self, command: SubscribeTradeTicks) -> None:
        self._trade_subs.add(command.instrument_id.value)
        self._maybe_start()

    async def _unsubscribe_order_book_deltas(self, command: UnsubscribeOrderBook) -> None:
        self._book_subs.discard(command.instrument_id.value)

    async def _unsubscribe_trade_ticks(self, command: UnsubscribeTradeTicks) -> None:
        self._trade_subs.discard(command.instrument_id.value)

    # -- replay ------------------------------------------------------------------------

    def _maybe_start(self) -> None:
        wanted = set(self._instruments)
        if self._task is None and wanted <= self._book_subs and wanted <= self._trade_subs:
            self._task = self._loop.create_task(self._replay(), name="ingest-replay")
            self._task.add_done_callback(self._replay_done)

    def _replay_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._hooks.log is not None:
            self._hooks.log.error("replay failed", error=repr(exc), exc_info=exc)

    def _feed_records(self, index: int, feed: Feed) -> Iterator[tuple[int, int, Record]]:
        """(merge key, feed index, record) of one feed, in file order."""
        # bookTicker lines are counted, not parsed: live mode does not subscribe to them.
        parser = parser_for(feed, quotes=False)
        key = 0
        book_tickers = metrics.MESSAGES.labels(feed.symbol, "book_ticker")
        for path in feed.files:
            recorded = RecordedFile(path)
            self._files.append(recorded)
            for line in recorded.lines():
                try:
                    msgs = parser.parse_all(line)
                except ParseRejection as exc:
                    metrics.REJECTIONS.labels(feed.symbol, exc.reason).inc()
                    if self._hooks.log is not None:
                        self._hooks.log.warning(
                            "line rejected",
                            symbol=feed.symbol,
                            file=path.name,
                            line=line.lineno,
                            reason=exc.reason,
                            error=str(exc)[:200],
                        )
                    continue
                if not msgs:
                    if parser.quotes_skipped >= _COUNT_EVERY:
                        book_tickers.inc(parser.quotes_skipped)
                        parser.quotes_skipped = 0
                    continue
                for msg in msgs:
                    key = max(key, msg.event_ns)
                    yield key, index, msg  # type: ignore[misc]  # no quotes: quotes=False
            book_tickers.inc(parser.quotes_skipped)
            parser.quotes_skipped = 0

    async def _replay(self) -> None:
        streams = [self._feed_records(i, feed) for i, feed in enumerate(self._feeds)]
        merged = (
            streams[0]  # one feed: nothing to merge
            if len(streams) == 1
            # Items compare as (key, feed index, ...): two heads never tie on both, so
            # the messages themselves are never compared.
            else heapq.merge(*streams)
        )
        base_key: int | None = None
        base_wall = 0.0
        speed = self._speed
        total_bytes = sum(p.stat().st_size for feed in self._feeds for p in feed.files) or 1
        reason = "end of recording"
        progress = self._hooks.on_progress
        count = 0
        key = 0
        try:
            for count, (key, index, msg) in enumerate(merged, start=1):
                if speed is not None:
                    now = time.monotonic()
                    if base_key is None:
                        base_key, base_wall = key, now
                    delay = base_wall + (key - base_key) / 1e9 / speed - now
                    if delay > MAX_IDLE_S:
                        base_key, base_wall = key, now  # skip a long idle stretch
                    elif delay > 0.001:
                        await asyncio.sleep(delay)
                self._handoffs[index](msg)
                if count % _YIELD_EVERY == 0:
                    ratio = self._bytes_read() / total_bytes
                    metrics.REPLAY_PROGRESS.set(ratio)
                    if progress is not None:
                        progress(ratio, key, count, False)
                    await asyncio.sleep(0)
                    if self._hooks.wait_for_room is not None:
                        await self._hooks.wait_for_room()
            metrics.REPLAY_PROGRESS.set(1.0)
            if progress is not None:
                progress(1.0, key, count, True)
        except OSError as exc:
            # An unreadable file ends the replay; consumers learn it from ``down``.
            reason = f"replay failed: {exc}"
            if self._hooks.log is not None:
                self._hooks.log.error("replay failed", error=repr(exc))
        # Let Nautilus deliver everything handed to it before declaring the end.
        await self._side.wait_delivered()
        self.finished = True
        self._hooks.on_end(reason)

    def _bytes_read(self) -> float:
        return sum(f.progress * f.size for f in self._files)


def make_replay_factory(
    feeds: list[Feed], side: SideChannel, hooks: ReplayHooks
) -> type[LiveDataClientFactory]:
    """A factory class bound to this process's feeds, side channel and hooks."""

    class ReplayClientFactory(LiveDataClientFactory):
        @staticmethod
        def create(  # type: ignore[override]
            loop: asyncio.AbstractEventLoop,
            name: str,
            config: ReplayClientConfig,
            msgbus: MessageBus,
            cache: Cache,
            clock: LiveClock,
        ) -> ReplayDataClient:
            del name
            return ReplayDataClient(loop, msgbus, cache, clock, config, feeds, side, hooks)

    return ReplayClientFactory
