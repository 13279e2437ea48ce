"""The replay progress line: format, throttling, and when it is shown."""

from __future__ import annotations

import io

from services.ingest.core import smooth_skew
from services.ingest.progress import ProgressLine, format_progress, progress_enabled


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shown_only_on_a_terminal_unless_forced() -> None:
    assert progress_enabled("auto", _Tty())
    assert not progress_enabled("auto", io.StringIO())
    assert progress_enabled("always", io.StringIO())
    assert not progress_enabled("never", _Tty())


def test_progress_line_format() -> None:
    line = format_progress(0.5, 1_723_161_600_000_000_000, 12_345, 9876.4, width=10)
    assert line == "replay [#####-----]  50.0%  2024-08-09 00:00:00 UTC  12,345 msgs  9,876 msg/s"
    assert "[----------]   0.0%  -" in format_progress(0.0, 0, 0, 0.0, width=10)


def test_progress_line_redraws_in_place_and_is_throttled() -> None:
    out = io.StringIO()
    progress = ProgressLine(out, interval_s=3600)
    progress.update(0.1, 1_723_161_600_000_000_000, 200, False)
    progress.update(0.2, 1_723_161_601_000_000_000, 400, False)  # within the interval
    progress.update(1.0, 1_723_161_602_000_000_000, 600, True)  # the final one always draws
    text = out.getvalue()
    assert progress.drawn == 2
    assert text.count("\r\x1b[K") == 2 and text.endswith("\n")
    assert "100.0%" in text and "600 msgs" in text and "00:00:02 UTC" in text


def test_clock_skew_is_smoothed() -> None:
    skew = smooth_skew(None, -1_500_000_000)
    assert skew == -1_500_000_000
    for _ in range(1000):
        skew = smooth_skew(skew, -1_300_000_000)
    assert abs(skew + 1_300_000_000) < 100_000  # converged to the new level (0.1 ms)
    assert smooth_skew(0.0, 100, alpha=0.5) == 50.0
