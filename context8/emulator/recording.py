"""Recorded files -> one timeline of venue frames per (market, symbol).

Files follow the kit layout ``<venue>-<market>/<SYMBOL>/<file>``; a symbol's files are
one continuous stream in date order. Binance files are gzip text, ``<local ts> <JSON>``
per line: the combined-stream JSON ``{"stream":..,"data":..}`` is what subscribers get,
verbatim; a line without ``stream`` is the body of the REST depth snapshot. Bybit files
are zips of v5 public WebSocket messages (``orderbook.N.SYM`` snapshot + deltas).

Each frame gets a schedule time on exchange time (``data.E`` on Binance, ``ts`` on
Bybit; a frame without one, e.g. a spot bookTicker, takes its predecessor's), made
non-decreasing. A pause between two files longer than ``max_gap_ms`` (two recording
sessions of one symbol, e.g. days apart) is cut out of the schedule: the clock jumps it.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import orjson

from context8.emulator.markets import MARKETS

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"
#: Bundled files the emulator skips by default: the 2023 spot file has no REST
#: snapshot, so no book can ever be served for it (data/README.md).
DEFAULT_EXCLUDED = frozenset({"btcusdt_20230405.dat.gz"})
#: Two files of a symbol further apart than this (exchange time) are separate sessions.
DEFAULT_MAX_GAP_MS = 10_000

_DATE_RE = re.compile(r"(\d{8})|(\d{4}-\d{2}-\d{2})")
_PAIR_RE = re.compile(rb'\["(-?\d+(?:\.\d+)?)","(-?\d+(?:\.\d+)?)"\]')
_EMPTY: list[list[str]] = []


class Kind(IntEnum):
    """What a recorded frame is."""

    DEPTH = 1  # Binance diff depth event / Bybit orderbook delta
    TRADE = 2
    TICKER = 3  # Binance bookTicker
    SNAPSHOT = 4  # Binance REST depth body (not streamed) / Bybit orderbook snapshot
    OTHER = 5
    #: Synthetic (``derivatives.py``), never read from a file: Binance markPrice / Bybit
    #: tickers, and Binance forceOrder / Bybit allLiquidation.
    MARK = 6
    LIQUIDATION = 7


@dataclass(slots=True)
class Event:
    """One recorded frame on the schedule."""

    t: int  # schedule time, ms (non-decreasing; gaps between sessions removed)
    offset: int  # exchange time = t + offset
    kind: Kind
    stream: str  # Binance stream name / Bybit topic; "" for a Binance REST snapshot
    text: str  # the JSON exactly as recorded
    first_id: int = 0  # Binance U
    last_id: int = 0  # Binance u / Bybit u
    prev_id: int = -1  # Binance futures pu (-1 where absent)
    bids: list[list[str]] = field(default_factory=list)
    asks: list[list[str]] = field(default_factory=list)
    seq: int = 0  # Bybit cross sequence
    cts: int = 0  # Bybit matching-engine time


class RecordingError(ValueError):
    """A file cannot be read as a kit recording."""


@dataclass
class Recording:
    """A symbol's frames in schedule order and what was learnt reading them."""

    market: str
    symbol: str
    files: tuple[Path, ...]
    events: list[Event]
    #: kind -> recorded stream names (Binance) / topics (Bybit) of that kind
    streams: dict[Kind, set[str]]
    price_precision: int
    size_precision: int
    #: Bybit: depth N of the recorded ``orderbook.N.SYM`` topic
    book_depth: int | None = None
    sessions: int = 1

    @property
    def has_snapshot(self) -> bool:
        return any(ev.kind is Kind.SNAPSHOT for ev in self.events)

    @property
    def data_kinds(self) -> set[Kind]:
        """The streamed kinds whose subscription starts the clock (``on-subscribe``)."""
        return {k for k in self.streams if k in (Kind.DEPTH, Kind.TRADE)}


def file_date_key(path: Path) -> str:
    """Sort key putting a symbol's day files in date order (the date in the name)."""
    match = _DATE_RE.search(path.name)
    if match is None:
        return path.name
    return (match.group(1) or match.group(2).replace("-", "")) + path.name


def kit_location(path: Path) -> tuple[str, str]:
    """(market, SYMBOL) of a kit path ``<venue>-<market>/<SYMBOL>/<file>``."""
    parts = path.parts
    if len(parts) < 3 or parts[-3] not in MARKETS:
        raise RecordingError(
            f"cannot place {str(path)!r}: expected <venue>-<market>/<SYMBOL>/<file> with "
            f"<venue>-<market> one of {', '.join(MARKETS)}"
        )
    return parts[-3], parts[-2].upper()


def default_files(data_dir: Path = DATA_DIR) -> list[Path]:
    """Every bundled recording except those that can serve no book."""
    return sorted(
        p
        for p in data_dir.glob("*/*/*")
        if p.is_file() and p.parts[-3] in MARKETS and p.name not in DEFAULT_EXCLUDED
    )


def group_files(paths: Sequence[Path]) -> dict[tuple[str, str], list[Path]]:
    """Files per (market, SYMBOL), each group in date order."""
    groups: dict[tuple[str, str], list[Path]] = {}
    for path in paths:
        if not path.is_file():
            raise RecordingError(f"recorded file not found: {str(path)!r}")
        groups.setdefault(kit_location(path), []).append(path)
    return {key: sorted(files, key=file_date_key) for key, files in groups.items()}


def _lines(path: Path) -> Iterator[bytes]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                for line in archive.read(name).split(b"\n"):
                    if line.strip():
                        yield line.strip()
        return
    # Whole-file inflate + split: C speed, and the bundled files are a few MB each.
    for line in gzip.decompress(path.read_bytes()).split(b"\n"):
        line = line.strip()
        if not line:
            continue
        stamp, sep, body = line.partition(b" ")
        # The kit's Binance lines carry a local receive time first.
        yield body if sep and stamp.isdigit() else line


def _decimals(number: bytes) -> int:
    return len(number.partition(b".")[2].rstrip(b"0"))


class _Scheduler:
    """Non-decreasing schedule times; long pauses between files are cut out."""

    def __init__(self, max_gap_ms: int) -> None:
        self.max_gap_ms = max_gap_ms
        self.offset = 0  # exchange time - schedule time of the current session
        self.last_t: int | None = None
        self.sessions = 1
        self._file_start = False

    def new_file(self) -> None:
        self._file_start = True

    def place(self, exchange_ms: int | None) -> tuple[int, int]:
        if exchange_ms is None:
            t = self.last_t if self.last_t is not None else 0
            return t, self.offset
        if self._file_start and self.last_t is not None:
            self._file_start = False
            if exchange_ms - self.offset - self.last_t > self.max_gap_ms:
                # A new session: continue its schedule 1 ms after the previous one.
                self.offset = exchange_ms - (self.last_t + 1)
                self.sessions += 1
        self._file_start = False
        t = exchange_ms - self.offset
        if self.last_t is not None and t < self.last_t:
            t = self.last_t
        self.last_t = t
        return t, self.offset


def _binance_event(msg: dict[str, Any], text: str, sched: _Scheduler) -> Event:
    stream = msg.get("stream")
    if stream is None:  # the REST depth snapshot body
        if "lastUpdateId" not in msg:
            raise RecordingError("a line without 'stream' that is not a depth snapshot")
        t, off = sched.place(msg.get("E"))
        last = int(msg["lastUpdateId"])
        return Event(
            t, off, Kind.SNAPSHOT, "", text, last, last, -1, msg["bids"], msg["asks"]
        )
    data = msg["data"]
    t, off = sched.place(data.get("E"))
    if "@depth" in stream and "U" in data:
        return Event(
            t,
            off,
            Kind.DEPTH,
            stream,
            text,
            int(data["U"]),
            int(data["u"]),
            int(data.get("pu", -1)),
            data.get("b", _EMPTY),
            data.get("a", _EMPTY),
        )
    if stream.endswith("@trade"):
        return Event(t, off, Kind.TRADE, stream, text)
    if stream.endswith("@bookTicker"):
        return Event(t, off, Kind.TICKER, stream, text, last_id=int(data.get("u", 0)))
    return Event(t, off, Kind.OTHER, stream, text)


def _bybit_event(msg: dict[str, Any], text: str, sched: _Scheduler) -> Event:
    topic = msg.get("topic", "")
    t, off = sched.place(msg.get("ts"))
    if not topic.startswith("orderbook."):
        kind = Kind.TRADE if topic.startswith("publicTrade.") else Kind.OTHER
        return Event(t, off, kind, topic, text)
    data = msg["data"]
    kind = Kind.SNAPSHOT if msg.get("type") == "snapshot" else Kind.DEPTH
    u = int(data.get("u", 0))
    return Event(
        t,
        off,
        kind,
        topic,
        text,
        u,
        u,
        -1,
        data.get("b", _EMPTY),
        data.get("a", _EMPTY),
        int(data.get("seq", 0)),
        int(msg.get("cts", 0)),
    )


def load_symbol(
    market: str, symbol: str, files: Sequence[Path], max_gap_ms: int = DEFAULT_MAX_GAP_MS
) -> Recording:
    """Read one symbol's files (date order) into its schedule."""
    spec = MARKETS[market]
    sched = _Scheduler(max_gap_ms)
    events: list[Event] = []
    streams: dict[Kind, set[str]] = {}
    pp = sp = 0
    book_depth: int | None = None
    make = _binance_event if spec.is_binance else _bybit_event
    for path in files:
        sched.new_file()
        for lineno, raw in enumerate(_lines(path), start=1):
            try:
                msg = orjson.loads(raw)
                event = make(msg, raw.decode(), sched)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise RecordingError(f"{path}:{lineno}: unreadable frame ({exc})") from exc
            events.append(event)
            if event.stream:
                streams.setdefault(event.kind, set()).add(event.stream)
            if event.kind is Kind.SNAPSHOT or (event.kind is Kind.DEPTH and lineno < 2000):
                # Levels quote ["price","size"]: the most significant decimals seen of
                # each column is the grid the symbol is on.
                for price, size in _PAIR_RE.findall(raw):
                    pp = max(pp, _decimals(price))
                    sp = max(sp, _decimals(size))
            if not spec.is_binance and event.kind in (Kind.DEPTH, Kind.SNAPSHOT):
                book_depth = book_depth or int(event.stream.split(".")[1])
    if not events:
        raise RecordingError(f"no frames in {', '.join(str(p) for p in files)}")
    return Recording(
        market,
        symbol,
        tuple(files),
        events,
        streams,
        pp,
        sp,
        book_depth,
        sched.sessions,
    )


def load_all(
    paths: Sequence[Path], max_gap_ms: int = DEFAULT_MAX_GAP_MS
) -> list[Recording]:
    """Every (market, symbol) of ``paths``, each with its files in date order."""
    return [
        load_symbol(market, symbol, files, max_gap_ms)
        for (market, symbol), files in sorted(group_files(paths).items())
    ]
