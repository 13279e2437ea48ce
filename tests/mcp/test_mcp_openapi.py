"""The served OpenAPI document against the running HTTP API: schemathesis generates
requests from it (valid and invalid), and every answer must be documented, never a 5xx,
and match its declared schema and content type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from context8.redis_server import RedisServer
from tests.mcp.helpers import HttpServerProcess, make_report, now_ms, put_report, register_symbol

#: Kept small: the suite runs on two cores; every operation still gets its examples.
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def api_server() -> Iterator[HttpServerProcess]:
    # Its own Redis: other tests flush the shared one between tests.
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    put_report(client, make_report("BTCUSDT"))
    put_report(client, make_report("ETHUSDT", mid=3400.0, updated_at_ms=now_ms() - 60_000))
    register_symbol(client, "SOLUSDT")
    proc = HttpServerProcess(server.url)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        client.close()
        server.stop()


@pytest.fixture(scope="module")
def document(api_server: HttpServerProcess) -> dict[str, Any]:
    answer = httpx.get(f"{api_server.base}/openapi.json", timeout=5)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_document_is_openapi_3_1_and_names_every_json_route(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert {
        "/v1/reports/{symbol}",
        "/v1/reports/{symbol}/history",
        "/v1/reports",
        "/v1/symbols",
        "/healthz",
        "/readyz",
    } <= set(document["paths"])
    # One contract: the report schema is the MCP tool's output schema, refs rewritten.
    report = document["components"]["schemas"]["Report"]
    assert "$defs" not in report and "#/$defs/" not in str(document)
    assert {"symbol", "ingestion", "data_age_ms"} <= set(report["required"])


def test_api_conforms_to_its_openapi_document(api_server: HttpServerProcess) -> None:
    """Every documented operation, fuzzed from the served document (schemathesis's lazy
    pytest loader does not run on pytest 9, so the operations are driven here)."""
    schema = schemathesis.openapi.from_url(f"{api_server.base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    store = redis.Redis.from_url(api_server.redis_url)
    fuzzed = 0
    for operation in operations:
        for mode in GenerationMode:
            put_report(store, make_report("BTCUSDT"))  # keep one report fresh
            try:
                _fuzz(operation, mode)
            except Unsatisfiable:
                # Nothing to violate: an operation without parameters has no negative case.
                assert mode is GenerationMode.NEGATIVE
                continue
            fuzzed += 1
    # Every positive run, and the negatives of the three operations that take parameters.
    assert fuzzed >= len(operations) + 3


def _fuzz(operation: Any, mode: GenerationMode) -> None:
    """Positive: schema-valid requests must be accepted and answered per the document;
    negative: invalid ones must be refused with a documented 4xx, never a 5xx."""
    excluded: list[Any] = []
    if operation.path == "/readyz":
        # It answers a documented 503 when nothing is fresh: not a server error.
        excluded.append(not_a_server_error)
    if operation.path == "/v1/reports":
        # More than C8_MCP_MAX_BATCH distinct symbols is a documented 400, but a schema
        # cannot count distinct items (duplicates count once, so no maxItems).
        excluded.append(positive_data_acceptance)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any) -> None:
        case.call_and_validate(timeout=10, excluded_checks=excluded)

    conforms()
