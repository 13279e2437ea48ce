"""Recorded files -> the wire entries ingest writes, offline (no Redis, no event loop).

Used by ``context8 report-at``, tests and benches. It runs ingest's own code, not a
second parser: the feed table (``replay_feeds``: kit layout, precisions, symbol map),
the recorded-file framing and ``LineParser`` (NautilusTrader venue schemas), the side
channel and the real ``IngestActor`` (``BookSequencer``, checkpoints, status entries,
wire encoding). Only the transport differs:

* The Nautilus objects are handed to the Actor's handlers directly instead of through
  the TradingNode's data engine. With ``managed=False`` subscriptions the engine
  delivers the very object the client handed it, one instrument in order, so the Actor
  sees the same sequence of calls.
* ``MemorySink`` stands in for ``StreamWriter``: what the Actor appends is decoded with
  ``shared.wire.decode`` exactly as a calc worker decodes an ``XRANGE`` reply.

Each feed gets its own Actor: the Actor keeps all state per instrument, so a symbol's
entries do not depend on the other feeds replayed beside it (nor on their merge order).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.ingest.feeds import Feed, parse_precisions, parse_symbol_map, replay_feeds
from services.ingest.stall import parse_stall_overrides
from shared import wire

#: The ``down`` reason ingest's replay publishes when a recording ends.
END_OF_RECORDING = "end of recording"


class MemorySink:
    """Stands in for ``StreamWriter``: queues each appended entry, decoded, per symbol."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[wire.Entry]] = {}
        self.appended: Counter[str] = Counter()

    def append(self, symbol: str, kind: str, fields: dict[bytes, bytes]) -> None:
        # Decode the encoded fields: the round trip a Redis Stream entry makes.
        self._queues.setdefault(symbol, deque()).append(wire.decode(fields))
        self.appended[kind] += 1

    def drain(self, symbol: str) -> Iterator[wire.Entry]:
        queue = self._queues.get(symbol)
        while queue:
            yield queue.popleft()


class QuietLog:
    """Structlog-like logger that keeps only counts (the CLI's stdout is its output)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def _record(self, level: str, event: str, **_: Any) -> None:
        self.counts[f"{level}:{event}"] += 1

    def info(self, event: str, **kw: Any) -> None:
        self._record("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._record("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._record("error", event, **kw)


@dataclass(frozen=True)
class IngestOptions:
    """The ingest settings that change the entries (defaults = ingest's defaults)."""

    checkpoint_interval_s: float = 30.0
    snapshot_wait_s: float = 10.0
    #: ``C8_INGEST_PRECISIONS`` / ``C8_INGEST_SYMBOL_MAP`` syntax.
    precisions: str = ""
    symbol_map: str = ""
    #: ``C8_INGEST_STALL_AFTER_S`` / ``C8_INGEST_STALL_AFTER`` (stalls on exchange time).
    stall_after_s: float = 10.0
    stall_after: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> IngestOptions:
        """From ``services.ingest.settings.Settings`` (the same env the service reads)."""
        return cls(
            checkpoint_interval_s=settings.ingest_checkpoint_interval_s,
            snapshot_wait_s=settings.ingest_snapshot_wait_s,
            precisions=settings.ingest_precisions,
            symbol_map=settings.ingest_symbol_map,
            stall_after_s=settings.ingest_stall_after_s,
            stall_after=settings.ingest_stall_after,
        )


@dataclass
class FeedReplay:
    """One feed's offline replay: iterate ``entries()`` once (lazily, in stream order)."""

    feed: Feed
    options: IngestOptions = field(default_factory=IngestOptions)
    log: Any = field(default_factory=QuietLog)
    #: Lines rejected by the parser, by reason (filled while iterating).
    rejections: Counter[str] = field(default_factory=Counter)
    sink: MemorySink = field(default_factory=MemorySink)

    @property
    def size_unit(self) -> str:
        return str(self.feed.registration()["size_unit"])

    def entries(self) -> Iterator[wire.Entry]:
        """The entries ingest appends to ``keys.stream(feed.symbol)``, ending with ``down``."""
        # Nautilus is imported only now (seconds): a configuration error fails fast.
        from services.ingest.actor import IngestActor, IngestActorConfig
        from services.ingest.instruments import make_instrument
        from services.ingest.parsing import BookMsg, LineParser, ParseRejection, QuoteMsg
        from services.ingest.recorded import RecordedFile
        from services.ingest.side_channel import SideChannel

        feed, side, sink = self.feed, SideChannel(), self.sink
        actor = IngestActor(
            IngestActorConfig(
                checkpoint_interval_s=self.options.checkpoint_interval_s,
                snapshot_wait_s=self.options.snapshot_wait_s,
                stall_after_s=self.options.stall_after_s,
                stall_after=parse_stall_overrides(self.options.stall_after),
            ),
            [feed],
            side,
            sink,  # type: ignore[arg-type]  # duck-typed StreamWriter
            self.log,
        )
        parser = LineParser(feed, make_instrument(feed).id, quotes=False)  # as the replay
        iid = feed.instrument_id
        for path in feed.files:
            for line in RecordedFile(path).lines():
                try:
                    msgs = parser.parse_all(line)
                except ParseRejection as exc:
                    self.rejections[exc.reason] += 1
                    continue
                for msg in msgs:
                    if isinstance(msg, QuoteMsg):
                        continue  # not with quotes=False; bookTicker is not a wire entry
                    # What ReplayDataClient._emit does, with the data engine's delivery
                    # to the Actor inlined.
                    side.push(iid, msg)
                    if isinstance(msg, BookMsg):
                        if msg.deltas is not None:
                            actor.on_order_book_deltas(msg.deltas)
                    else:
                        actor.on_trade_tick(msg.tick)
                    yield from sink.drain(feed.symbol)
        actor.end_of_feed(iid, END_OF_RECORDING)
        yield from sink.drain(feed.symbol)


def offline_feeds(paths: list[Path], options: IngestOptions | None = None) -> list[FeedReplay]:
    """One ``FeedReplay`` per symbol of the files, sorted by symbol.

    Raises ``shared.errors.ConfigError`` exactly as ingest does at start-up (missing
    file, a path whose venue/market/symbol cannot be inferred, colliding symbols).
    """
    options = options or IngestOptions()
    parse_stall_overrides(options.stall_after)  # a bad spec fails here, not mid-replay
    feeds = replay_feeds(
        paths, parse_precisions(options.precisions), parse_symbol_map(options.symbol_map)
    )
    return [FeedReplay(feed, options) for feed in feeds]


def offline_entries(
    paths: list[Path], options: IngestOptions | None = None
) -> dict[str, list[wire.Entry]]:
    """Every symbol's full stream (eager; for tests and benches)."""
    return {fr.feed.symbol: list(fr.entries()) for fr in offline_feeds(paths, options)}
