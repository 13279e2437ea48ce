"""The report contract documents itself: every field of shared/schema/report-1.2.json has a
description (the MCP output schema and the docs take them from there, nowhere else)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from services.mcp.schemas import served_report_schema
from shared.report import report_schema


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in node.get("properties", {}).items():
        here = f"{path}.{name}" if path else name
        yield here, sub
        yield from fields(sub, here)
        if isinstance(sub.get("items"), dict):
            yield from fields(sub["items"], here + "[]")


def test_every_contract_field_has_a_description() -> None:
    listed = dict(fields(report_schema()))
    assert len(listed) > 50
    undocumented = sorted(p for p, node in listed.items() if len(node.get("description", "")) < 10)
    assert undocumented == []


def test_the_mcp_output_schema_takes_the_contracts_descriptions() -> None:
    contract = dict(fields(report_schema()))
    served = dict(fields(served_report_schema(2500, 9000)))
    assert served["served_at"]["description"] and served["report_write_age_ms"]["description"]
    same = [p for p in contract if served[p].get("description") == contract[p]["description"]]
    assert set(contract) - set(same) == {"ingestion.status"}  # + the server's thresholds
    assert "2500 ms" in served["ingestion.status"]["description"]
    assert "9000 ms" in served["ingestion.status"]["description"]
