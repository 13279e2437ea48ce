"""The compiled fast schema check agrees with jsonschema (the reference) on reports."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.publisher.core import report_errors
from services.publisher.schema_check import compile_schema
from shared.report import report_schema
from tests.publisher.helpers import report_dict

REFERENCE = jsonschema.Draft202012Validator(report_schema())
FAST = compile_schema(report_schema())


def full_report() -> dict[str, Any]:
    """A valid report that also carries the optional blocks (more schema to exercise)."""
    r = report_dict("BTCUSDT", 4, "calc-1", 1_721_300_000_000)
    r["liquidity"] = {
        "walls": [{"side": "bid", "price": 64000.0, "qty": 12.0, "severity": "high"}],
        "vacuums": [{"from": 64010.0, "to": 64050.0, "severity": "low"}],
        "volume_profile": {
            "POC": 64000.0,
            "VAH": 64100.0,
            "VAL": 63900.0,
            "window_sec": 300.0,
            "trade_count": 42,
        },
    }
    r["anomalies"] = [{"type": "iceberg", "severity": "medium", "note": "refills at 64000"}]
    return r


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=200),
    st.sampled_from([0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 100.0, 101.0, 1e-9, 64000.5]),
    st.sampled_from(
        [
            "",
            "x",
            "BTCUSDT",
            "btcusdt",
            "BINANCE",
            "bid",
            "low",
            "ok",
            "2024-07-18T00:00:00.000Z",
            "2024-07-18T00:00:00+00:00",
            "2024-07-18 00:00:00",
            "1.2",
            "spoofing",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["price", "qty", "side", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)


def mutate(doc: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif action == "grow" and isinstance(parent[last], list):
        parent[last].extend([copy.deepcopy(parent[last][0])] * 20 if parent[last] else [value])
    else:
        parent[last] = value
    return doc


def test_valid_reports_pass() -> None:
    for doc in (report_dict("BTCUSDT", 1, "calc-1", 1000), full_report()):
        assert REFERENCE.is_valid(doc)
        assert FAST(doc)
        assert report_errors(doc) == []


@settings(max_examples=400, deadline=None)
@given(
    st.data(),
    st.lists(
        st.tuples(st.sampled_from(["set", "set", "delete", "grow"]), json_values),
        min_size=1,
        max_size=3,
    ),
)
def test_agrees_with_jsonschema_on_mutated_reports(
    data: st.DataObject, mutations: list[tuple[str, Any]]
) -> None:
    doc: Any = full_report()
    for action, value in mutations:
        candidates = paths(doc)
        path = data.draw(st.sampled_from(candidates))
        doc = mutate(doc, path, action, value)
    assert FAST(doc) == REFERENCE.is_valid(doc), doc


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_agrees_on_arbitrary_json(value: Any) -> None:
    assert FAST(value) == REFERENCE.is_valid(value)


def test_json_number_semantics() -> None:
    doc = full_report()
    doc["data_age_ms"] = 12.0  # an integer in JSON Schema
    assert FAST(doc) and REFERENCE.is_valid(doc)
    doc["data_age_ms"] = True  # a boolean is not a number
    assert not FAST(doc) and not REFERENCE.is_valid(doc)
    doc["data_age_ms"] = 12
    doc["best_bid"] = {"price": 0, "qty": 1}  # exclusiveMinimum 0
    assert not FAST(doc) and not REFERENCE.is_valid(doc)
    assert report_errors(doc) != []


def test_unsupported_keywords_fail_at_compile_time() -> None:
    with pytest.raises(ValueError, match="not supported"):
        compile_schema({"type": "object", "additionalProperties": False})
    with pytest.raises(ValueError, match="local"):
        compile_schema({"$ref": "https://example.com/other.json"})
