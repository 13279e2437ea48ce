"""The report contract: schema 1.2 (shared/schema/report-1.2.json) and its helpers.

The JSON Schema is the one source: calc builds plain dicts (services/calc/analytics),
the publisher validates them against it and stamps ``updatedAt``, the read API derives
its output schemas from it. Unknown values are JSON null, never a placeholder number.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any, Literal

SCHEMA_VERSION: Literal["1.2"] = "1.2"

def iso_utc_from_ns(ns: int) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z`` suffix."""
    seconds, rest = divmod(ns, 1_000_000_000)
    if rest % 1_000_000 == 0:
        # A whole millisecond (every cycle boundary, every exchange timestamp): the
        # date part is the second's, memoised; the same text as the general path.
        return _iso_second(seconds) + f"{rest // 1_000_000:03d}Z"
    dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def ns_from_iso_utc(text: str) -> int:
    """Inverse of ``iso_utc_from_ns`` (millisecond precision)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1000) * 1_000_000


@cache
def packaged_schema(file: str) -> dict[str, Any]:
    """A JSON Schema of the package's ``shared/schema/<file>`` (the contracts' one source)."""
    text = resources.files("shared").joinpath(f"schema/{file}").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator(file: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(packaged_schema(file))


def validation_errors(file: str, document: dict[str, Any]) -> list[str]:
    """Every way ``document`` violates the schema ``file`` (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in _validator(file).iter_errors(document)
    ]


def report_schema() -> dict[str, Any]:
    """The JSON Schema of report 1.2, loaded from the package."""
    return packaged_schema("report-1.2.json")


def schema_errors(report: dict[str, Any]) -> list[str]:
    """Every way ``report`` violates the schema (empty when valid)."""
    return validation_errors("report-1.2.json", report)
