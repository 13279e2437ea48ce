"""The read path's lean parts (issue #12): the JSON routes' ASGI fast path on a real uvicorn
server, per-turn read batching over a real redis-server, the decoded-report reuse and the
response/metric shortcuts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.mcp.errors import StoreUnavailableError
from services.mcp.fast_http import FastRoutes, PathTemplate
from services.mcp.freshness import FreshnessPolicy
from services.mcp.http_json import JSONBody
from services.mcp.metrics import observe
from services.mcp.read_batch import ReadBatch
from services.mcp.sections import MAX_REPORT_BYTES
from services.mcp.service import ReportService
from services.mcp.store import ReportStore
from shared.errors import InvalidSymbolError
from shared.redis_client import make_redis
from shared.settings import ServiceSettings
from tests.mcp.helpers import make_report, now_ms, put_report, unreachable_redis
from tests.mcp.test_mcp_auth_asgi import serve

# --- pure: path templates -------------------------------------------------------------


def segments(path: str) -> list[str]:
    """A request path as FastRoutes hands it to the templates."""
    return path.split("/")


def test_path_template_matches_one_nonempty_segment_per_parameter() -> None:
    report = PathTemplate.parse("/v1/reports/{symbol}")
    assert report.match(segments("/v1/reports/BTCUSDT")) == {"symbol": "BTCUSDT"}
    assert report.match(segments("/v1/reports/")) is None  # empty: Starlette redirects
    assert report.match(segments("/v1/reports/A/history")) is None
    assert report.match(segments("/v1/report/A")) is None
    history = PathTemplate.parse("/v1/reports/{symbol}/history")
    assert history.match(segments("/v1/reports/eth/history")) == {"symbol": "eth"}
    assert not PathTemplate.parse("/healthz").has_params
    with pytest.raises(ValueError, match="unsupported path parameter"):
        PathTemplate.parse("/v1/x/{n:int}")


def test_fast_routes_match_in_declaration_order_like_starlette() -> None:
    async def a(request: Request) -> Response:
        return Response()

    async def b(request: Request) -> Response:
        return Response()

    routes = [
        Route("/v1/things/all", b),
        Route("/v1/things/{name}", a),
        Route("/v1/stuff/{name}", a),
        Route("/v1/stuff/all", b),  # never reached in Starlette: the template comes first
        Route("/v1/all", b),
    ]
    front = FastRoutes(Starlette(), routes)
    assert front.find("/v1/all") == (b, {})
    assert front.find("/v1/things/all") == (b, {})
    assert front.find("/v1/things/x") == (a, {"name": "x"})
    assert front.find("/v1/stuff/all") == (a, {"name": "all"})  # declaration order, as Starlette
    assert front.find("/v1/other") is None
    # What the fast path cannot serve stays with Starlette alone.
    left = FastRoutes(Starlette(), [Route("/p", a, methods=["POST"]), Route("/n/{n:int}", a)])
    assert left.find("/p") is None and left.find("/n/1") is None


# --- the fast path on a real uvicorn ----------------------------------------------------


def test_fast_path_answers_like_starlette_and_leaves_the_rest_to_it() -> None:
    async def item(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "boom":
            raise RuntimeError("a bug")
        return JSONBody({"name": name, "q": request.query_params.get("q")}, 200, {"ETag": "x"})

    async def other(request: Request) -> Response:
        return JSONBody({"from": "starlette"})

    fast = [Route("/v1/items/{name}", item)]
    app = Starlette(routes=[*fast, Route("/v1/other", other)])
    with serve(FastRoutes(app, fast)) as base, httpx.Client(base_url=base, timeout=10) as http:
        one = http.get("/v1/items/abc?q=1")
        assert one.status_code == 200 and one.json() == {"name": "abc", "q": "1"}
        assert one.headers["content-type"] == "application/json"
        assert one.headers["cache-control"] == "no-store" and one.headers["etag"] == "x"
        assert one.headers["content-length"] == str(len(one.content))
        head = http.head("/v1/items/abc")
        assert head.status_code == 200 and head.content == b""
        assert http.get("/v1/other").json() == {"from": "starlette"}
        assert http.post("/v1/items/abc").status_code == 405  # Starlette's answer
        assert http.get("/v1/items/").status_code in (307, 404)  # Starlette's too
        boom = http.get("/v1/items/boom")
        assert boom.status_code == 500 and boom.json() == {"error": "internal error"}
        # uvicorn closes that connection (the app raised after answering, as it does
        # behind Starlette's ServerErrorMiddleware); the server lives on.
        assert httpx.get(f"{base}/v1/items/again", timeout=10).status_code == 200


# --- read batching ----------------------------------------------------------------------


async def test_reads_of_one_turn_share_one_fetch_and_later_reads_a_new_one() -> None:
    fetched: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> list[str]:
        fetched.append(list(keys))
        await asyncio.sleep(0)
        return [k.lower() for k in keys]

    batch: ReadBatch[str, str] = ReadBatch(fetch)
    first = await asyncio.gather(*(batch.read(k) for k in ["A", "B", "A", "A"]))
    assert first == ["a", "b", "a", "a"]
    assert fetched == [["A", "B"]]
    assert await batch.read("C") == "c"
    assert fetched == [["A", "B"], ["C"]]


async def test_a_failed_fetch_fails_every_caller_with_its_own_error() -> None:
    async def fetch(keys: Sequence[str]) -> list[str]:
        raise StoreUnavailableError("down")

    batch: ReadBatch[str, str] = ReadBatch(fetch)
    results = await asyncio.gather(batch.read("A"), batch.read("B"), return_exceptions=True)
    assert all(isinstance(r, StoreUnavailableError) and str(r) == "down" for r in results)
    assert results[0] is not results[1]


async def test_a_fetch_answering_the_wrong_count_fails_its_callers() -> None:
    async def fetch(keys: Sequence[str]) -> list[str]:
        return []

    batch: ReadBatch[str, str] = ReadBatch(fetch)
    with pytest.raises(RuntimeError, match="0 values for 1"):
        await asyncio.wait_for(batch.read("A"), 5)


async def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    release = asyncio.Event()

    async def fetch(keys: Sequence[str]) -> list[str]:
        await release.wait()
        return list(keys)

    batch: ReadBatch[str, str] = ReadBatch(fetch)
    leaving = asyncio.ensure_future(batch.read("A"))
    staying = asyncio.ensure_future(batch.read("A"))
    await asyncio.sleep(0)  # both joined; the batch is sent at the end of this turn
    leaving.cancel()
    release.set()
    assert await staying == "A"
    assert leaving.cancelled()


async def test_store_reads_batch_over_real_redis(redis_url: str, store: redis.Redis) -> None:
    put_report(store, make_report("BTCUSDT", updated_at_ms=now_ms()))
    put_report(store, make_report("ETHUSDT", updated_at_ms=now_ms()))
    client = make_redis(ServiceSettings(redis_url=redis_url))
    try:
        reports = ReportStore(client)
        rows = await asyncio.gather(
            reports.read("BTCUSDT"), reports.read("ETHUSDT"), reports.read("NOPE")
        )
        assert [r.symbol if r else None for r in rows] == ["BTCUSDT", "ETHUSDT", None]
        assert rows[0] is not None and orjson.loads(rows[0].json)["symbol"] == "BTCUSDT"
        same = await asyncio.gather(*(reports.read("BTCUSDT") for _ in range(5)))
        assert all(row == same[0] for row in same)
    finally:
        await client.aclose()


async def test_store_reads_fail_as_unavailable_for_every_caller() -> None:
    client = unreachable_redis()
    try:
        reports = ReportStore(client)
        results = await asyncio.gather(
            reports.read("BTCUSDT"), reports.read("ETHUSDT"), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
    finally:
        await client.aclose()


# --- decoded reports reused while the stored bytes are the same --------------------------


async def test_decoded_report_is_reused_until_the_stored_report_changes(
    redis_url: str, store: redis.Redis
) -> None:
    written = now_ms()
    put_report(store, make_report("BTCUSDT", updated_at_ms=written))
    client = make_redis(ServiceSettings(redis_url=redis_url))
    try:
        service = ReportService(ReportStore(client), FreshnessPolicy(2500, 12000))
        first = await service.get_report("BTCUSDT")
        again = await service.get_report("BTCUSDT")
        assert first["updatedAt"] == again["updatedAt"] == written
        assert first is not again  # served copies: read-time fields are per read
        assert first["depth"] is again["depth"]  # one parse of the unchanged report
        put_report(store, make_report("BTCUSDT", updated_at_ms=written + 250))
        changed = await service.get_report("BTCUSDT")
        assert changed["updatedAt"] == written + 250 and changed["depth"] is not first["depth"]
        with pytest.raises(InvalidSymbolError):
            await service.get_report("bad symbol")
    finally:
        await client.aclose()


async def test_served_reports_still_respect_the_size_cap(
    redis_url: str, store: redis.Redis
) -> None:
    """Only a stored report near the cap is measured; one over it is trimmed as before."""
    big = make_report("BTCUSDT", updated_at_ms=now_ms())
    anomaly = {"type": "iceberg", "severity": "low", "note": "x"}
    big["anomalies"] = [dict(anomaly, note=f"{i} " + "x" * 200) for i in range(400)]
    put_report(store, big)
    # Just under the cap as stored: serving adds served_at, report_write_age_ms and, as
    # it is served late, ingestion.reason; the served JSON must still fit.
    near = make_report("ETHUSDT", updated_at_ms=now_ms() - 5000)
    near["anomalies"] = []
    room = MAX_REPORT_BYTES - len(orjson.dumps(near)) - 60
    near["anomalies"] = [dict(anomaly, note="y" * (room - 60))]
    assert MAX_REPORT_BYTES - 200 < len(orjson.dumps(near)) < MAX_REPORT_BYTES
    put_report(store, near)
    client = make_redis(ServiceSettings(redis_url=redis_url))
    try:
        service = ReportService(ReportStore(client), FreshnessPolicy(2500, 12000))
        served = await service.get_report("BTCUSDT")
        assert served["truncated"] == ["anomalies"]
        assert len(orjson.dumps(served)) <= MAX_REPORT_BYTES
        late = await service.get_report("ETHUSDT")
        assert late["ingestion"]["status"] == "degraded"
        assert len(orjson.dumps(late)) <= MAX_REPORT_BYTES
        assert late["truncated"] == ["anomalies"] and late["anomalies"] == []
    finally:
        await client.aclose()


# --- response and metric shortcuts ---------------------------------------------------------


def test_json_body_headers() -> None:
    plain = JSONBody({"a": 1})
    assert plain.body == b'{"a":1}'
    assert plain.raw_headers == [
        (b"cache-control", b"no-store"),
        (b"content-length", b"7"),
        (b"content-type", b"application/json"),
    ]
    tagged = JSONBody([], 200, {"ETag": 'W/"x"', "Cache-Control": "no-cache"})
    assert dict(tagged.raw_headers) == {
        b"etag": b'W/"x"',
        b"cache-control": b"no-cache",
        b"content-length": b"2",
        b"content-type": b"application/json",
    }
    assert len(tagged.raw_headers) == 4  # one cache-control, the caller's


def test_observe_counts_by_outcome() -> None:
    def count(status: str) -> float:
        labels = {"transport": "test_fast", "endpoint": "/x", "status": status}
        return REGISTRY.get_sample_value("context8_mcp_requests_total", labels) or 0.0

    with observe("test_fast", "/x"):
        pass
    with pytest.raises(InvalidSymbolError), observe("test_fast", "/x"):
        raise InvalidSymbolError("bad")
    with observe("test_fast", "/x"):
        pass
    assert (count("ok"), count("invalid_symbol")) == (2.0, 1.0)
    timed = REGISTRY.get_sample_value(
        "context8_mcp_request_duration_seconds_count",
        {"transport": "test_fast", "endpoint": "/x"},
    )
    assert timed == 3.0
