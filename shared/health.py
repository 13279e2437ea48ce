"""The report's health score and its freshness rules, shared by calc (which computes them)
and the read API (which recomputes them when a report is served later than written).

Pure functions; definitions in docs/analytics.md ("Health").
"""

from __future__ import annotations

from typing import Any

#: ingestion.status thresholds on data age (ms).
DEGRADED_AGE_MS = 5_000
DOWN_AGE_MS = 30_000

#: Health: component weights (sum 1) and scoring ranges.
HEALTH_WEIGHTS: dict[str, float] = {"freshness": 0.4, "book_integrity": 0.4, "spread": 0.2}
FRESH_FULL_MS = 1_000  # age at or below: freshness 100
FRESH_ZERO_MS = DOWN_AGE_MS  # age at or above: freshness 0
SPREAD_FULL_BPS = 5.0  # spread at or below: spread score 100
SPREAD_ZERO_BPS = 100.0  # spread at or above: spread score 0
#: The score never claims more than its status allows: a degraded report is at most 50
#: (use with care), a down one 0 (do not rely on it), whatever its components say.
STATUS_SCORE_CAP: dict[str, int] = {"ok": 100, "degraded": 50, "down": 0}


def linear_score(value: float, full_at: float, zero_at: float) -> int:
    """100 at or below ``full_at``, 0 at or above ``zero_at``, linear between."""
    if value <= full_at:
        return 100
    if value >= zero_at:
        return 0
    return round(100 * (zero_at - value) / (zero_at - full_at))


def freshness_score(age_ms: int | None) -> int:
    return 0 if age_ms is None else linear_score(age_ms, FRESH_FULL_MS, FRESH_ZERO_MS)


def combine(parts: dict[str, int], status: str) -> dict[str, Any]:
    """The health object: weighted score of ``parts``, capped by ``status``."""
    score = round(sum(HEALTH_WEIGHTS.get(k, 0.0) * v for k, v in parts.items()))
    cap = STATUS_SCORE_CAP.get(status, 0)
    return {
        "score": max(0, min(cap, score)),
        "components": [{"metric": k, "score": v} for k, v in parts.items()],
    }


def health(
    integrity: int, age_ms: int | None, spread_bps: float | None, status: str
) -> dict[str, Any]:
    """Weighted score 0-100 with its components (freshness, book_integrity, spread)."""
    spread = 0 if spread_bps is None else linear_score(spread_bps, SPREAD_FULL_BPS, SPREAD_ZERO_BPS)
    parts = {"freshness": freshness_score(age_ms), "book_integrity": integrity, "spread": spread}
    return combine(parts, status)


def reaged(stored: Any, age_ms: int, status: str) -> dict[str, Any] | None:
    """A stored health object as it must be served at data age ``age_ms`` with ``status``:
    the freshness component recomputed (never raised), the score lowered by what that
    component lost at its weight, then capped by ``status``. None if not well-formed."""
    if not isinstance(stored, dict) or not isinstance(stored.get("score"), int):
        return None
    components = stored.get("components")
    if not isinstance(components, list):
        return None
    score = stored["score"]
    served: list[Any] = []
    for component in components:
        if isinstance(component, dict) and component.get("metric") == "freshness":
            old = component.get("score")
            if not isinstance(old, int):
                return None
            new = min(old, freshness_score(age_ms))
            score -= round(HEALTH_WEIGHTS["freshness"] * (old - new))
            component = {**component, "score": new}
        served.append(component)
    cap = STATUS_SCORE_CAP.get(status, 0)
    return {**stored, "score": max(0, min(cap, score)), "components": served}
