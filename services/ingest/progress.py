"""A one-line, in-place replay progress display for a terminal (stderr).

Shown only when stderr is a TTY (or ``C8_INGEST_PROGRESS=always``): logs redirected to
a file or collected by a supervisor stay pure JSON lines. The line is redrawn at most
every ``interval_s`` of wall time and ends with a newline when the replay ends.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO


def progress_enabled(mode: str, stream: TextIO) -> bool:
    """``auto``: only on a terminal; ``always`` / ``never`` force it."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_progress(
    ratio: float, event_ns: int, messages: int, rate: float, width: int = 24
) -> str:
    """``[#####-----]  42.0%  2024-08-09 00:01:23 UTC  12,345 msgs  9,876 msg/s``."""
    ratio = min(max(ratio, 0.0), 1.0)
    filled = round(ratio * width)
    bar = "#" * filled + "-" * (width - filled)
    when = (
        datetime.fromtimestamp(event_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if event_ns
        else "-"
    )
    return f"replay [{bar}] {ratio * 100:5.1f}%  {when}  {messages:,} msgs  {rate:,.0f} msg/s"


class ProgressLine:
    """Redraws the progress line in place (``\\r`` + clear to end of line)."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 0.25) -> None:
        self._stream = stream or sys.stderr
        self._interval = interval_s
        self._started = time.monotonic()
        self._last_draw = float("-inf")  # the first update always draws
        self._last_count = 0
        self._last_time = self._started
        self._rate = 0.0
        self.drawn = 0

    def update(self, ratio: float, event_ns: int, messages: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last_draw < self._interval:
            return
        elapsed = now - self._last_time
        if elapsed > 0:
            self._rate = (messages - self._last_count) / elapsed
        if final:
            total = now - self._started
            self._rate = messages / total if total > 0 else 0.0
        self._last_count, self._last_time, self._last_draw = messages, now, now
        line = format_progress(ratio, event_ns, messages, self._rate)
        self._stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        self._stream.flush()
        self.drawn += 1
