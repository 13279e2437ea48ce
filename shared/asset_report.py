"""The asset report contract: shared/schema/asset-1.2.json (the one source) and helpers."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def asset_schema() -> dict[str, Any]:
    """The JSON Schema of the asset report, loaded from the package."""
    text = resources.files("shared").joinpath("schema/asset-1.2.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(asset_schema())


def asset_schema_errors(report: dict[str, Any]) -> list[str]:
    """Every way ``report`` violates the asset schema (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in _validator().iter_errors(report)
    ]
