"""Read-time freshness: a stored report as it must be served *now*.

The publisher writes a report with the data age and ingestion status it had at write
time. A reader that gets it later must not see it as fresher than it is, so at serve
time the data age grows by the time since the write, and a report that has not been
rewritten for a while is downgraded (never upgraded). Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.health import reaged
from shared.report import iso_utc_from_ns

Status = Literal["ok", "degraded", "down"]

#: Worse statuses rank higher; an unrecognised stored status counts as ``down``.
_RANK: dict[str, int] = {"ok": 0, "degraded": 1, "down": 2}
_BY_RANK: tuple[Status, ...] = ("ok", "degraded", "down")


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """How long a report may go unrewritten before it is served degraded / down."""

    stale_after_ms: int = 3000
    down_after_ms: int = 15000

    def __post_init__(self) -> None:
        if not 0 < self.stale_after_ms < self.down_after_ms:
            raise ValueError("need 0 < stale_after_ms < down_after_ms")


def write_age_status(write_age_ms: int | None, policy: FreshnessPolicy) -> Status:
    """The status a report deserves from its write age alone (unknown age: ``down``)."""
    if write_age_ms is None or write_age_ms > policy.down_after_ms:
        return "down"
    if write_age_ms > policy.stale_after_ms:
        return "degraded"
    return "ok"


def worse(a: str, b: str) -> Status:
    """The worse of two statuses."""
    return _BY_RANK[max(_RANK.get(a, 2), _RANK.get(b, 2))]


def write_age_ms(write_ms: int | None, now_ms: int) -> int | None:
    """Milliseconds since the write; None when the write time is unknown (0 or absent).

    Clamped at 0: the publisher's wall clock may run slightly ahead of ours.
    """
    if not write_ms or write_ms <= 0:
        return None
    return max(0, now_ms - write_ms)


def serve_report(
    report: dict[str, Any], write_ms: int | None, now_ms: int, policy: FreshnessPolicy
) -> dict[str, Any]:
    """A copy of ``report`` with its freshness recomputed for a reader at ``now_ms``.

    - ``data_age_ms`` = stored ``data_age_ms`` + time since the write.
    - ``ingestion.status`` = the worse of the stored status and the write-age status;
      when the write age made it worse, ``ingestion.feed``/``book`` become ``unknown``
      and ``ingestion.reason`` says why.
    - ``health``: freshness component recomputed for the served data age, score capped
      by the served status (``shared.health``: degraded <= 50, down = 0).
    - extra fields ``served_at`` (ISO UTC of ``now_ms``) and ``report_write_age_ms``
      (ms since the publisher wrote the report; null when the write time is unknown,
      in which case the report is served ``down``).

    Every other stored field is kept as is; ``report`` is not modified.
    """
    age = write_age_ms(write_ms, now_ms)
    served = dict(report)
    stored_ingestion = report.get("ingestion")
    ingestion = dict(stored_ingestion) if isinstance(stored_ingestion, dict) else {}
    stored_status = str(ingestion.get("status"))
    late = write_age_status(age, policy)
    status = worse(stored_status, late)
    ingestion["status"] = status
    ingestion.setdefault("last_update", None)
    if status != stored_status and late == status:
        # Downgraded here: the report was not rewritten, so what it said about the feed
        # and the book is no longer known; no field may keep saying "ok".
        ingestion["feed"] = "unknown"
        ingestion["book"] = "unknown"
        ingestion["reason"] = (
            "report not rewritten since it was written (publisher, calc or ingest stopped?)"
            if age is None
            else f"report not rewritten for {age} ms (publisher, calc or ingest stopped?)"
        )
    served["ingestion"] = ingestion
    stored_age = report.get("data_age_ms")
    base_age = stored_age if isinstance(stored_age, int) and stored_age >= 0 else 0
    served["data_age_ms"] = base_age + (age or 0)
    health = reaged(report.get("health"), served["data_age_ms"], status)
    if health is not None:
        served["health"] = health
    served["served_at"] = iso_utc_from_ns(now_ms * 1_000_000)
    served["report_write_age_ms"] = age
    return served
