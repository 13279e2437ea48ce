"""Event-time cycle boundaries (pure).

Boundaries are the multiples of the period on the exchange clock. Before an event with
time ``e`` is applied, every boundary ``t < e`` not yet emitted is due (its state is
every event with time <= t), so a replay gives the same boundaries whatever the
arrival pace. The stall watchdog may also release boundaries up to an estimate of the
exchange clock (``due_through``), never beyond it.

A jump in event time longer than ``max_idle`` boundaries (a recording spliced across
days, a venue outage replayed at full speed) releases the first ``max_idle`` boundaries
and then only the last one before the event: nothing happened in between, and a burst
of thousands of identical reports would help nobody. Still a pure function of the
event times, so replays stay deterministic.
"""

from __future__ import annotations


class CycleClock:
    __slots__ = ("max_idle", "next_ns", "period_ns")

    def __init__(self, period_ns: int, max_idle: int = 240) -> None:
        if period_ns <= 0 or max_idle < 1:
            raise ValueError("cycle period and max_idle must be positive")
        self.period_ns = period_ns
        self.max_idle = max_idle
        #: The earliest boundary not yet emitted (None until the first event).
        self.next_ns: int | None = None

    def _start(self, event_ns: int) -> None:
        p = self.period_ns
        self.next_ns = -(-event_ns // p) * p  # first boundary at or after the event

    def due_before(self, event_ns: int) -> list[int]:
        """Boundaries ``t < event_ns`` not yet emitted (and mark them emitted)."""
        if self.next_ns is None:
            self._start(event_ns)
            return []
        return self._release(event_ns - 1)

    def due_through(self, estimate_ns: int) -> list[int]:
        """Boundaries ``t <= estimate_ns`` not yet emitted (stall watchdog)."""
        if self.next_ns is None:
            return []
        return self._release(estimate_ns)

    def _release(self, last_ns: int) -> list[int]:
        start = self.next_ns
        assert start is not None
        if start > last_ns:
            return []
        p = self.period_ns
        final = start + (last_ns - start) // p * p
        if (final - start) // p < self.max_idle:
            due = list(range(start, final + 1, p))
        else:
            due = [*range(start, start + self.max_idle * p, p), final]
        self.next_ns = final + p
        return due
