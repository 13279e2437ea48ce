"""Helpers for the ingest tests: kit sessions through the pure core, polling."""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.ingest.feeds import Feed, replay_feeds
from services.ingest.parsing import ParseRejection, parser_for
from services.ingest.recorded import RecordedFile
from services.ingest.records import BookUpdate, Quote, Record, Status, Trade
from services.ingest.scaling import scaled
from services.ingest.sequencer import BookSequencer, Output, Rule
from shared import keys
from shared.wire import Entry, decode
from tests.support.polling import poll

DATA = Path(__file__).resolve().parents[2] / "data"

#: session name -> files, replayed in this order (kit README "What is here").
SESSIONS: dict[str, list[Path]] = {
    "usdm-btc-2024-07": [
        DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
        DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
    ],
    "usdm-eth-2024-07": [
        DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
        DATA / "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
    ],
    "usdm-btc-2024-08": [DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"],
    "spot-btc-2024-08": [
        DATA / "binance-spot/BTCUSDT/btcusdt_20240808.gz",
    ],
    "coinm-btc-2024-08": [
        DATA / "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
    ],
}
SPOT_2023 = DATA / "binance-spot/BTCUSDT/btcusdt_20230405.dat.gz"
BYBIT = DATA / "bybit-linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"


@dataclass
class SessionResult:
    """What replaying one session through parser + sequencer produced."""

    feed: Feed
    sequencer: BookSequencer
    outputs: list[Output] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    #: (u of an applied diff, top of book right after it)
    tops: list[tuple[int, int, tuple[int, int, int, int] | None]] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    messages: list[Record] = field(default_factory=list)

    def compare_with_book_ticker(self) -> tuple[int, int]:
        """(matches, mismatches) of the rebuilt top vs every comparable bookTicker.

        A bookTicker is comparable when its update id falls between the end of one
        applied diff (``u``) and the start of the next (``U``): the book is then exactly
        the state after the first of them.
        """
        pp, sp = self.feed.price_precision, self.feed.size_precision
        ends = [u for u, _next_first, _top in self.tops]
        matches = mismatches = 0
        for quote in self.quotes:
            i = bisect.bisect_right(ends, quote.u) - 1
            if i < 0 or i + 1 >= len(self.tops) or not quote.u < self.tops[i][1]:
                continue
            expected = (
                scaled(quote.bid_px, pp),
                scaled(quote.bid_sz, sp),
                scaled(quote.ask_px, pp),
                scaled(quote.ask_sz, sp),
            )
            if self.tops[i][2] == expected:
                matches += 1
            else:
                mismatches += 1
        return matches, mismatches


def replay_session(files: list[Path]) -> SessionResult:
    """Parse a session's files and run its book messages through a BookSequencer."""
    feed = replay_feeds(files)[0]
    parser = parser_for(feed)
    rejections: dict[str, int] = {}
    quotes: list[Quote] = []
    messages: list[Record] = []
    for path in feed.files:
        for line in RecordedFile(path).lines():
            try:
                msg = parser.parse(line)
            except ParseRejection as exc:
                rejections[exc.reason] = rejections.get(exc.reason, 0) + 1
                continue
            if isinstance(msg, Quote):
                quotes.append(msg)
            else:
                messages.append(msg)
    result = sequence_messages(feed, messages)
    result.quotes = quotes
    result.rejections = rejections
    return result


def sequence_messages(feed: Feed, messages: list[Record]) -> SessionResult:
    """Run parsed records (possibly tampered with) through a fresh BookSequencer."""
    result = SessionResult(feed, BookSequencer(Rule.FUTURES if feed.is_futures else Rule.NEXT_ID))
    result.messages = messages
    applied: list[BookUpdate] = []
    for msg in messages:
        if isinstance(msg, Trade):
            result.trades.append(msg)
            continue
        for out in result.sequencer.on_update(msg):
            result.outputs.append(out)
            if isinstance(out, BookUpdate) and not out.snapshot:
                applied.append(out)
                result.tops.append((out.u, 0, result.sequencer.top()))
    # The window of a top is [its diff's u, the next applied diff's U).
    for i in range(len(result.tops) - 1):
        u, _, top = result.tops[i]
        result.tops[i] = (u, applied[i + 1].U, top)
    return result


def snaps(outputs: list[Any]) -> list[BookUpdate]:
    return [o for o in outputs if isinstance(o, BookUpdate) and o.snapshot]


def deltas(outputs: list[Any]) -> list[BookUpdate]:
    return [o for o in outputs if isinstance(o, BookUpdate) and not o.snapshot]


def statuses(outputs: list[Any]) -> list[Status]:
    return [o for o in outputs if isinstance(o, Status)]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes."""
    return poll(predicate, timeout, interval=interval)


REPO = Path(__file__).resolve().parents[2]


def start_ingest(redis_url: str, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """``python -m services.ingest`` with ``C8_*`` settings (Nautilus's stdout discarded)."""
    full = {
        **os.environ,
        "C8_REDIS_URL": redis_url,
        "C8_LOG_LEVEL": "INFO",
        "C8_INGEST_NAUTILUS_LOG_LEVEL": "ERROR",
        **{f"C8_{k.upper()}": v for k, v in env.items()},
    }
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.ingest"],
            cwd=REPO,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def replay_once(
    redis_url: str, log_path: Path, files: list[Path], speed: str = "max", **env: str
) -> subprocess.Popen[bytes]:
    """``start_ingest`` replaying ``files`` once at ``speed``, exiting 0 at their end."""
    return start_ingest(
        redis_url,
        log_path,
        ingest_replay_files=",".join(str(f) for f in files),
        ingest_speed=speed,
        ingest_exit_at_end="true",
        **env,
    )


def stream_entries(client: Any, symbol: str) -> list[tuple[bytes, Entry]]:
    """Every entry of the symbol's stream, decoded."""
    return [(eid, decode(fields)) for eid, fields in client.xrange(keys.stream(symbol))]
