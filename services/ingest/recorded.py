"""Reading recorded venue files line by line (no parsing beyond the line framing).

* Binance (hftbacktest collector): gzip text, ``<local receive ts> <JSON>`` per line; the
  local ts is nanoseconds in the 2024 files and microseconds in the 2023 ``.dat.gz``.
* Bybit (public historical order-book downloads): a zip holding one file of JSON lines,
  no local timestamp (``None``: the receive time is then the exchange time).
"""

from __future__ import annotations

import re
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

T = TypeVar("T")

#: Below this a local timestamp is microseconds (ns since 1970 passed 1e17 in 1973).
_NS_THRESHOLD = 10**17


class RawLine(NamedTuple):
    """One recorded line: local receive time (ns, or None) and the JSON bytes.

    A named tuple: one is made per venue message, and a frozen dataclass's ``__init__``
    costs several times more.
    """

    recv_ns: int | None
    raw: bytes
    lineno: int


class RecordedFile:
    """Iterate a recorded file's lines; ``progress`` is the share of compressed bytes read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = max(path.stat().st_size, 1)
        self._fileobj: IO[bytes] | None = None
        self.malformed = 0  # lines whose framing (timestamp) is unreadable
        self.done = False

    @property
    def progress(self) -> float:
        if self.done:
            return 1.0
        if self._fileobj is None or self._fileobj.closed:
            return 0.0
        return min(self._fileobj.tell() / self.size, 1.0)

    def lines(self) -> Iterator[RawLine]:
        if self.path.suffix == ".zip":
            yield from self._zip_lines()
        else:
            yield from self._gzip_lines()
        self.done = True

    def _gzip_lines(self) -> Iterator[RawLine]:
        with open(self.path, "rb") as fileobj:
            self._fileobj = fileobj
            for lineno, line in enumerate(gzip_lines(fileobj), start=1):
                line = line.strip()
                if not line:
                    continue
                ts, sep, raw = line.partition(b" ")
                if not sep or not ts.isdigit():
                    # A line without a timestamp prefix is handed on unframed: the parser
                    # rejects it (counted) rather than this reader guessing.
                    self.malformed += 1
                    yield RawLine(None, line, lineno)
                    continue
                recv = int(ts)
                yield RawLine(recv * 1000 if recv < _NS_THRESHOLD else recv, raw, lineno)

    def _zip_lines(self) -> Iterator[RawLine]:
        with open(self.path, "rb") as fileobj, zipfile.ZipFile(fileobj) as archive:
            self._fileobj = fileobj
            for name in archive.namelist():
                with archive.open(name) as member:
                    for lineno, line in enumerate(_safe_lines(member), start=1):
                        line = line.strip()
                        if line:
                            yield RawLine(None, line, lineno)


#: Compressed bytes read at a time: large enough that zlib and ``bytes.split`` (C) do
#: the per-line work, instead of ``GzipFile.readline`` (Python) once per line; small
#: enough that a replay of hundreds of files holds little (a chunk inflates ~10x, and
#: each file holds ``GZIP_AHEAD`` of them plus the one being read: ~2 MB per file).
GZIP_CHUNK = 1 << 16
GZIP_AHEAD = 2


def gzip_lines(fileobj: IO[bytes], chunk: int = GZIP_CHUNK) -> Iterator[bytes]:
    """The lines of a gzip file (members concatenated), without their ``\\n``.

    A truncated or corrupt file ends the lines where its readable data ends; the cut
    last line is still yielded (the parser counts it as malformed). Reading and
    inflating run a few chunks ahead in a thread (zlib releases the GIL, so that work
    moves off the event loop's core).
    """
    tail = b""
    for out in prefetched(_inflated(fileobj, chunk), depth=GZIP_AHEAD):
        lines = (tail + out).split(b"\n")
        tail = lines.pop()
        yield from lines
    if tail:
        yield tail


def _inflated(fileobj: IO[bytes], chunk: int) -> Iterator[bytes]:
    inflate = zlib.decompressobj(wbits=31)
    while data := fileobj.read(chunk):
        try:
            out = inflate.decompress(data)
            while inflate.eof and inflate.unused_data:  # the next gzip member
                rest = inflate.unused_data
                inflate = zlib.decompressobj(wbits=31)
                out += inflate.decompress(rest)
        except zlib.error:
            return
        yield out


_DONE = object()


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead by a daemon thread.

    An exception in the producer is raised here, in order. Closing this generator
    early (the consumer stops) stops the producer at its next item. Producer and
    consumer wait on one condition, woken only by each other (no polling: a replay of
    hundreds of files has as many producers, most of them waiting on a full buffer).
    """
    buffer: deque[Any] = deque()
    ready = threading.Condition()
    stopped = False

    def offer(item: Any) -> bool:
        """Hand ``item`` over; False once the consumer has stopped."""
        with ready:
            while len(buffer) >= depth and not stopped:
                ready.wait()
            if stopped:
                return False
            buffer.append(item)
            ready.notify_all()
            return True

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    thread = threading.Thread(target=produce, name="recorded-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            with ready:
                while not buffer:
                    ready.wait()
                item = buffer.popleft()
                ready.notify_all()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        with ready:
            stopped = True
            ready.notify_all()


def _safe_lines(stream: Any) -> Iterator[bytes]:
    """Lines of a compressed member; a truncated archive ends the file instead of raising."""
    while True:
        try:
            line = stream.readline()
        except (EOFError, OSError, zipfile.BadZipFile):
            return
        if not line:
            return
        yield line


def _decimals(digits: bytes | None) -> int:
    return len(digits.rstrip(b"0")) if digits else 0


def observed_precisions(path: Path, venue: str, max_lines: int = 5000) -> tuple[int, int]:
    """Price and size precision seen in the first lines of a file (for unknown symbols).

    Book levels and trades quote ``["price","size"]`` pairs; the largest number of
    significant decimals of each column is the grid the feed is on.
    """
    del venue  # both venues quote levels as ["price", "size"] string pairs
    pp = sp = 0
    pair_re = re.compile(rb'\["(-?\d+(?:\.\d+)?)","(-?\d+(?:\.\d+)?)"\]')
    for count, line in enumerate(RecordedFile(path).lines()):
        if count >= max_lines:
            break
        for price, size in pair_re.findall(line.raw):
            pp = max(pp, _decimals(price.partition(b".")[2]))
            sp = max(sp, _decimals(size.partition(b".")[2]))
    return pp, sp
