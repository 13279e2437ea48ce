"""Pacing arithmetic and the read position of one symbol's recording (no I/O).

A symbol's clock maps wall time to a position on its schedule (exchange time with
session gaps cut out): ``position = origin + elapsed_wall * 1000 * speed``. The cursor
hands out the frames the position has reached and applies each to the true book, so
the book is always "as of the current position" -- the REST snapshot and the streamed
frames can never disagree.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from context8.emulator.book import BookKeeper
from context8.emulator.recording import Event, Kind


class Clock:
    """Wall time (monotonic seconds) <-> schedule position (ms) at ``speed``."""

    def __init__(self, origin_ms: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.origin_ms = origin_ms
        self.speed = speed
        self.started_at: float | None = None

    @property
    def started(self) -> bool:
        return self.started_at is not None

    def start(self, now: float) -> bool:
        """Start at wall time ``now``; False if it was running already."""
        if self.started_at is not None:
            return False
        self.started_at = now
        return True

    def position(self, now: float) -> float | None:
        """Schedule position (ms) at wall time ``now``; None before the start."""
        if self.started_at is None:
            return None
        return self.origin_ms + max(0.0, now - self.started_at) * 1000.0 * self.speed

    def wall_at(self, t_ms: float) -> float:
        """Wall time at which the position reaches ``t_ms`` (the clock must be running)."""
        if self.started_at is None:
            raise RuntimeError("clock not started")
        return self.started_at + (t_ms - self.origin_ms) / (1000.0 * self.speed)


class Cursor:
    """Read position in a symbol's frames; every frame passed is applied to the book."""

    def __init__(
        self,
        events: Sequence[Event],
        keeper: BookKeeper,
        observe: Callable[[Event, BookKeeper], list[Event]] | None = None,
    ) -> None:
        """``observe(frame, keeper)``: called after each frame is applied; the frames it
        returns (synthetic derivatives) are handed out right after it."""
        self.events = events
        self.keeper = keeper
        self.observe = observe
        self.index = 0
        self._snapshot_at = [i for i, ev in enumerate(events) if ev.kind is Kind.SNAPSHOT]
        self.last_t = events[0].t if events else 0
        self.last_offset = events[0].offset if events else 0

    @property
    def ended(self) -> bool:
        return self.index >= len(self.events)

    def next_time(self) -> int | None:
        """Schedule time of the next frame; None at the end."""
        return None if self.ended else self.events[self.index].t

    def due(self, position: float) -> list[Event]:
        """Frames with schedule time <= ``position`` (applied to the book, in order)."""
        out: list[Event] = []
        events, keeper = self.events, self.keeper
        i, n = self.index, len(self.events)
        observe = self.observe
        while i < n and events[i].t <= position:
            ev = events[i]
            keeper.apply(ev)
            out.append(ev)
            if observe is not None:
                out.extend(observe(ev, keeper))
            i += 1
        if out:
            self.index = i
            self.last_t = out[-1].t
            self.last_offset = out[-1].offset
        return out

    def snapshot_ahead(self) -> bool:
        """Is there a snapshot line not yet reached (the book may become known)?"""
        k = bisect.bisect_left(self._snapshot_at, self.index)
        return k < len(self._snapshot_at)

    def exchange_ms(self, position: float | None) -> int:
        """Exchange time (ms) at ``position`` (the session of the last frame passed)."""
        t = self.last_t if position is None else max(position, self.last_t)
        return int(t + self.last_offset)
