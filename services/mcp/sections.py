"""Report sections: what ``get_report(symbol, sections)`` may ask for, and the selection.

A served report always keeps its identity and freshness fields (``HEADER``), so a client
that asked for one section still knows whose numbers they are and how old. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from services.mcp.errors import InvalidArgumentError

#: Fields every answer keeps, whatever sections were asked for.
HEADER: tuple[str, ...] = (
    "schemaVersion",
    "writer",
    "updatedAt",
    "symbol",
    "venue",
    "generated_at",
    "data_age_ms",
    "ingestion",
    "served_at",
    "report_write_age_ms",
)

#: Section name -> the report fields it holds.
SECTIONS: dict[str, tuple[str, ...]] = {
    "l1": ("last_price", "best_bid", "best_ask", "spread_bps", "mid_price", "micro_price"),
    "depth": ("depth",),
    "flow": ("flow", "volatility"),
    "liquidity": ("liquidity",),
    "anomalies": ("anomalies",),
    "health": ("health",),
    "derivatives": ("derivatives",),
    "stats_24h": (
        "change_24h_pct",
        "high_24h",
        "low_24h",
        "volume_24h",
        "stats_24h_window_sec",
    ),
}


class UnknownSectionError(InvalidArgumentError):
    """A section name that is not one of SECTIONS."""


def check_sections(names: Iterable[object]) -> list[str]:
    """The asked sections, de-duplicated in order; UnknownSectionError names the valid ones."""
    wanted: list[str] = []
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else None
        if key not in SECTIONS:
            shown = repr(name)[:40]
            raise UnknownSectionError(
                f"unknown section {shown}: expected any of {', '.join(SECTIONS)}"
            )
        if key not in wanted:
            wanted.append(key)
    return wanted


def select(report: dict[str, Any], sections: list[str]) -> dict[str, Any]:
    """The header fields plus the fields of ``sections`` (all fields when none is asked)."""
    if not sections:
        return report
    keep = set(HEADER).union(*(SECTIONS[s] for s in sections))
    return {k: v for k, v in report.items() if k in keep}


#: Largest served report (bytes of compact JSON). Real reports are ~4 KB (depth is at
#: most 20 levels a side); the lists without a schema bound are trimmed to fit instead of
#: letting one report grow an answer without limit.
MAX_REPORT_BYTES = 32 * 1024
#: Trimmed first to last: (parent field or None for the top level, list field).
_TRIMMABLE: tuple[tuple[str | None, str], ...] = (
    (None, "anomalies"),
    ("liquidity", "walls"),
    ("liquidity", "vacuums"),
)


def capped(report: dict[str, Any], max_bytes: int = MAX_REPORT_BYTES) -> dict[str, Any]:
    """``report`` if its JSON fits ``max_bytes``; else a copy whose unbounded lists lost
    their tail items until it fits (still valid JSON and schema), ``truncated`` naming
    them. The lists stay in calc's order (most relevant first)."""
    size = len(orjson.dumps(report))
    if size <= max_bytes:
        return report
    out = dict(report)
    truncated: list[str] = []
    for parent, name in _TRIMMABLE:
        holder = out if parent is None else out.get(parent)
        if not isinstance(holder, dict) or not isinstance(holder.get(name), list):
            continue
        if parent is not None:
            holder = out[parent] = dict(holder)
        items = list(holder[name])
        path = name if parent is None else f"{parent}.{name}"
        while items and size > max_bytes:
            removed = items.pop()
            size -= len(orjson.dumps(removed)) + 1
            if path not in truncated:
                truncated.append(path)
        holder[name] = items
        if size <= max_bytes:
            break
    out["truncated"] = truncated
    return out
