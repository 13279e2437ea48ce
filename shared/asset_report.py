"""The asset report contract: shared/schema/asset-1.2.json (the one source) and helpers."""

from __future__ import annotations

from typing import Any

from shared.report import packaged_schema, validation_errors

SCHEMA_FILE = "asset-1.2.json"


def asset_schema() -> dict[str, Any]:
    """The JSON Schema of the asset report, loaded from the package."""
    return packaged_schema(SCHEMA_FILE)


def asset_schema_errors(report: dict[str, Any]) -> list[str]:
    """Every way ``report`` violates the asset schema (empty when valid)."""
    return validation_errors(SCHEMA_FILE, report)
