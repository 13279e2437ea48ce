"""Recorded files -> the wire entries ingest writes, offline (no Redis, no event loop).

Used by ``context8 report-at``, tests and benches. It runs ingest's own code, not a
second parser: the feed table (``replay_feeds``: kit layout, precisions, symbol map),
the recorded-file framing, the venue parser and the ``FeedCore`` (sequencer, stalls on
exchange time, checkpoints, status entries), exactly as the service's Actor drives it;
only the transport differs: each entry is encoded with ``records.wire_fields`` and
decoded with ``shared.wire.decode``, the round trip a Redis Stream entry makes.

Each feed is replayed on its own: the core keeps all state per feed, so a symbol's
entries do not depend on the other feeds replayed beside it (nor on their merge order).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.ingest.core import CoreConfig, FeedCore, Out
from services.ingest.feeds import Feed, parse_precisions, parse_symbol_map, replay_feeds
from services.ingest.records import BookUpdate, Status, Trade, wire_fields
from services.ingest.stall import parse_stall_overrides, stall_limit_ns
from shared import wire

#: The ``down`` reason ingest's replay publishes when a recording ends.
END_OF_RECORDING = "end of recording"


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

    def core_config(self, symbol: str, wall_clock: bool = False) -> CoreConfig:
        """The feed core's settings for ``symbol``."""
        return CoreConfig(
            checkpoint_interval_ns=int(self.checkpoint_interval_s * 1e9),
            snapshot_wait_ns=int(self.snapshot_wait_s * 1e9),
            stall_limit_ns=stall_limit_ns(
                symbol, self.stall_after_s, parse_stall_overrides(self.stall_after)
            ),
            wall_clock=wall_clock,
        )


def decoded(outs: Iterable[Out], pp: int, sp: int) -> Iterator[wire.Entry]:
    """The stream entries among a core's outputs, through the wire and back."""
    for out in outs:
        if type(out) is BookUpdate or type(out) is Trade or type(out) is Status:
            yield wire.decode(wire_fields(out, pp, sp)[1])


@dataclass
class FeedReplay:
    """One feed's offline replay: iterate ``entries()`` once (lazily, in stream order)."""

    feed: Feed
    options: IngestOptions = field(default_factory=IngestOptions)
    #: Lines rejected by the parser, by reason (filled while iterating).
    rejections: Counter[str] = field(default_factory=Counter)
    #: The feed core of the last ``entries()`` run (its counts, its final state).
    core: FeedCore | None = None

    @property
    def size_unit(self) -> str:
        return str(self.feed.registration()["size_unit"])

    def entries(self) -> Iterator[wire.Entry]:
        """The entries ingest appends to ``keys.stream(feed.symbol)``, ending with ``down``."""
        # The venue parsers import Nautilus (seconds): a configuration error fails first.
        from services.ingest.parsing import ParseRejection, parser_for
        from services.ingest.recorded import RecordedFile

        feed = self.feed
        pp, sp = feed.price_precision, feed.size_precision
        core = self.core = FeedCore(feed, self.options.core_config(feed.symbol))
        parser = parser_for(feed, quotes=False)  # as the replay: bookTicker is no entry
        for path in feed.files:
            for line in RecordedFile(path).lines():
                try:
                    records = parser.parse_all(line)
                except ParseRejection as exc:
                    self.rejections[exc.reason] += 1
                    continue
                for record in records:
                    yield from decoded(core.on_record(record), pp, sp)  # type: ignore[arg-type]
        yield from decoded(core.end(END_OF_RECORDING), pp, sp)


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
