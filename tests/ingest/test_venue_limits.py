"""Venue limits and re-sync back-off (pure, on a fake clock)."""

from __future__ import annotations

import pytest

from services.ingest.venue_limits import ResyncBackoff, SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_allows_at_most_limit_per_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(4, 1.0, clock=clock)
    for _ in range(4):
        assert limiter.delay() == 0.0
        limiter.record()
    # A fifth message within the same second must wait for the oldest to leave the window.
    assert limiter.delay() == pytest.approx(1.0)
    clock.now += 0.4
    assert limiter.delay() == pytest.approx(0.6)
    clock.now += 0.6
    assert limiter.delay() == 0.0


async def test_acquire_waits_until_the_window_has_room() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 0.05, clock=clock)
    assert await limiter.acquire() == 0.0
    assert await limiter.acquire() == 0.0
    clock.now += 0.05  # the window moves on: no wait
    assert await limiter.acquire() == 0.0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowLimiter(0, 1.0)


def test_resync_backoff_is_immediate_then_exponential_with_jitter_and_capped() -> None:
    clock = FakeClock()
    backoff = ResyncBackoff(
        base_s=1.0, cap_s=8.0, reset_after_s=120.0, clock=clock, rng=lambda: 1.0
    )
    delays = []
    for _ in range(7):
        delays.append(backoff.next_delay())
        clock.now += 1.0
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    # Jitter: between half and all of the ceiling.
    low = ResyncBackoff(base_s=1.0, cap_s=8.0, clock=clock, rng=lambda: 0.0)
    assert [low.next_delay() for _ in range(3)] == [0.0, 0.5, 1.0]
    # A healthy spell resets it: the next re-sync starts at once again.
    clock.now += 121.0
    assert backoff.next_delay() == 0.0 and backoff.attempts == 1
