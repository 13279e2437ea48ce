"""Anomaly heuristics on hand-made scenarios whose answer is known."""

from __future__ import annotations

from services.calc.analytics.anomalies import AnomalyState

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


def _resting(levels: dict[tuple[str, float], float]):  # type: ignore[no-untyped-def]
    return lambda side, price: levels.get((side, price), 0.0)


def _evaluate(state: AnomalyState, t: int, **kw: object) -> list[dict]:
    args = {
        "resting": _resting({}),
        "mid": 100.0,
        "depth_band": (1_000.0, 1_000.0),
        "slip": (1.0, 1.0),
        "large_size": 5.0,
    }
    args.update(kw)
    return state.evaluate(t, **args)  # type: ignore[arg-type]


def test_iceberg_is_volume_far_beyond_what_was_shown_at_a_resting_level() -> None:
    state = AnomalyState()
    for i in range(10):
        state.on_fill(T0 + i * SEC, "ask", 100.0, 1.0, shown=1.0)  # refilled to 1.0 each time
    state.on_fill(T0, "bid", 99.0, 1.0, shown=1.0)
    levels = {("ask", 100.0): 1.0, ("bid", 99.0): 3.0}
    (found,) = _evaluate(state, T0 + 10 * SEC, resting=_resting(levels))
    assert (found["type"], found["side"], found["price"], found["severity"]) == (
        "iceberg",
        "ask",
        100.0,
        "medium",  # 10 traded / 1 shown = 10x: medium (5x low, 10x medium, 20x high)
    )
    # The level is gone: no longer an iceberg. Out of the 30 s window: forgotten.
    assert _evaluate(state, T0 + 11 * SEC, resting=_resting({})) == []
    assert _evaluate(state, T0 + 45 * SEC, resting=_resting(levels)) == []


def test_iceberg_needs_enough_fills_and_volume() -> None:
    state = AnomalyState()
    for i in range(4):  # 4 fills < 5
        state.on_fill(T0 + i, "ask", 100.0, 10.0, shown=0.5)
    assert _evaluate(state, T0 + SEC, resting=_resting({("ask", 100.0): 1.0})) == []
    small = AnomalyState()
    for i in range(8):  # 8 x 0.5 = 4 < wall threshold 5
        small.on_fill(T0 + i, "ask", 100.0, 0.5, shown=0.05)
    assert _evaluate(small, T0 + SEC, resting=_resting({("ask", 100.0): 1.0})) == []


def _pull(state: AnomalyState, t: int, price: float, filled: float = 0.0) -> None:
    state.on_level(t, "bid", price, 8.0, best=100.0)  # large (>= 5) and near the best
    if filled:
        state.on_fill(t + 1, "bid", price, filled, shown=8.0)
    state.on_level(t + SEC, "bid", price, 0.0, best=100.0)  # gone within 10 s


def test_spoofing_is_a_burst_of_pulls_above_the_symbols_own_norm() -> None:
    state = AnomalyState()
    t = T0
    _evaluate(state, t)  # sets the large-size threshold
    # A steady norm: one pull every 30 s -> about 2 in any 60 s window.
    for k in range(40):
        t = T0 + (k + 1) * 2 * SEC
        if k % 15 == 0:
            _pull(state, t - SEC, 99.99)
        assert _evaluate(state, t) == []
    # Filled orders are not pulls; far-from-top orders are not watched.
    for i in range(30):
        _pull(state, t + i * 10_000, 99.98, filled=4.0)
        state.on_level(t + i * 10_000, "bid", 90.0, 50.0, best=100.0)
        state.on_level(t + i * 10_000 + 1, "bid", 90.0, 0.0, best=100.0)
    t += 2 * SEC
    assert _evaluate(state, t) == []
    # A burst: 24 unfilled pulls near the top within two seconds.
    for i in range(24):
        _pull(state, t + i * 50_000_000, 99.995 - i * 0.002)
    t += 2 * SEC
    (found,) = _evaluate(state, t)
    assert found["type"] == "spoofing" and found["pulls"] >= 24
    assert found["severity"] == "high"  # >= 10x the usual ~2


def test_flash_crash_risk_needs_a_thin_side_and_grows_with_signals() -> None:
    state = AnomalyState()
    t = T0
    for k in range(20):  # normal book: 1000 each side, slippage 1 bps, mid 100
        t = T0 + k * 2 * SEC
        assert _evaluate(state, t) == []
    t += 2 * SEC
    (thin,) = _evaluate(state, t, depth_band=(200.0, 1_000.0))
    assert (thin["type"], thin["side"], thin["severity"]) == ("flash_crash_risk", "bid", "low")
    t += 2 * SEC
    (worse,) = _evaluate(state, t, depth_band=(100.0, 1_000.0), mid=99.0, slip=(1.0, None))
    assert worse["severity"] == "high" and worse["signals"] == ["thin", "moving", "slippage"]
    t += 2 * SEC
    # Thin ask while the price falls: thin only.
    (ask,) = _evaluate(state, t, depth_band=(1_000.0, 100.0), mid=98.0)
    assert (ask["side"], ask["severity"]) == ("ask", "low")
