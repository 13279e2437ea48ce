"""Stall detection: a symbol's book feed silent for longer than expected (pure, no I/O).

Only book messages (snapshots and diffs) count as signs of life: trades alone do not
prove the book feed is alive. Each symbol has an expected maximum silence
(``C8_INGEST_STALL_AFTER_S``, per-symbol ``C8_INGEST_STALL_AFTER``). The same
``StallWatch`` serves both modes on different clocks:

* live: the monotonic wall clock, checked by the Actor's watchdog task;
* replay: exchange event time, checked on each message of the symbol, so the outcome
  does not depend on the replay speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ConfigError

#: Words that switch a symbol's stall detection off.
_OFF = ("off", "none", "0")


def parse_stall_overrides(spec: str) -> dict[str, float]:
    """``BTCUSDT=5,XRPUSDT=30,SOLUSDT=off`` -> {symbol: seconds} (0 = off).

    Keys are the published (stream) symbols, as in the metrics and reports.
    """
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        symbol, sep, value = (x.strip() for x in item.partition("="))
        if not sep or not symbol or not value:
            raise ConfigError(
                f"bad C8_INGEST_STALL_AFTER item {item!r}: want SYMBOL=SECONDS (or SYMBOL=off)"
            )
        if value.lower() in _OFF:
            seconds = 0.0
        else:
            try:
                seconds = float(value)
            except ValueError as exc:
                raise ConfigError(
                    f"bad C8_INGEST_STALL_AFTER item {item!r}: {value!r} is not a number of "
                    "seconds or 'off'"
                ) from exc
            if not 0 < seconds < float("inf"):
                raise ConfigError(
                    f"bad C8_INGEST_STALL_AFTER item {item!r}: seconds must be > 0 (or 'off')"
                )
        out[symbol.upper()] = seconds
    return out


def check_stall_symbols(overrides: dict[str, float], symbols: list[str]) -> None:
    """A start-up error if an override names a symbol ingest does not publish."""
    unknown = sorted(set(overrides) - set(symbols))
    if unknown:
        raise ConfigError(
            f"C8_INGEST_STALL_AFTER names {', '.join(unknown)}, which ingest does not publish; "
            f"published symbols: {', '.join(sorted(symbols))}"
        )


def stall_limit_ns(symbol: str, default_s: float, overrides: dict[str, float]) -> int | None:
    """The symbol's expected maximum silence in ns, or None when detection is off."""
    seconds = overrides.get(symbol, default_s)
    return int(seconds * 1e9) if seconds > 0 else None


@dataclass(slots=True)
class StallWatch:
    """One symbol's book silence on one clock (ns).

    ``open_if_due(now)`` opens a stall once the silence exceeds the limit; the next book
    message closes it (``book(now)`` returns how long the silence lasted).
    """

    limit_ns: int | None
    last_book_ns: int | None = None
    stalled: bool = False
    #: Live: when a still-silent stalled feed gets its next re-sync request.
    retry_at_ns: int = 0

    def start(self, now_ns: int) -> None:
        """Count silence from now (live: the subscription) if no book message came yet."""
        if self.last_book_ns is None:
            self.last_book_ns = now_ns

    def book(self, now_ns: int) -> int | None:
        """A book message at ``now_ns``; returns the silence (ns) if it ends a stall."""
        last = self.last_book_ns
        if last is None or now_ns > last:
            self.last_book_ns = now_ns
        if not self.stalled:
            return None
        self.stalled = False
        return now_ns - last if last is not None else 0

    def silence_ns(self, now_ns: int) -> int:
        return 0 if self.last_book_ns is None else max(0, now_ns - self.last_book_ns)

    def open_if_due(self, now_ns: int) -> int | None:
        """Open a stall if the silence at ``now_ns`` exceeds the limit.

        Returns the time the stall began to count (last book message + limit), else None
        (no limit, no book message yet, already stalled, or not silent long enough).
        """
        if self.limit_ns is None or self.stalled or self.last_book_ns is None:
            return None
        if now_ns - self.last_book_ns <= self.limit_ns:
            return None
        self.stalled = True
        return self.last_book_ns + self.limit_ns
