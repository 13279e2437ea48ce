"""The asset report end to end: a real fleet replays BTC on Binance spot, USDⓈ-M and COIN-M
(2024-08-08, the same first seconds of each recording), the coordinator assigns
``asset:BTC`` to a calc worker, which emits fenced candidates the publisher writes; the
report read over HTTP and MCP matches plain books of the raw files at its event time,
and every asset report of a run paced at 5x equals the one of an unpaced run (and the
offline asset core's).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from mcp import Client

from context8.fleet import Fleet, FleetConfig, wait_until
from services.calc.analytics.asset import AssetCore, AssetParams
from services.ingest.offline import IngestOptions, offline_feeds
from shared import assets, keys
from shared.asset_report import asset_schema_errors
from shared.report import ns_from_iso_utc
from tests.calc.calc_kit import PlainState, plain_states_at
from tests.conftest import DATA
from tests.support.candidates import CandidateReader

pytestmark = pytest.mark.timeout(300)

MS = 1_000_000
UNIT = keys.asset_unit("BTC")
SYMBOL_MAP = "binance-spot:BTCUSDT=BTCUSDTSPOT"
FILES = {
    "BTCUSDTSPOT": "binance-spot/BTCUSDT/btcusdt_20240808.gz",
    "BTCUSDT": "binance-usdm/BTCUSDT/btcusdt_20240808.gz",
    "BTCUSDPERP": "binance-coinm/BTCUSD_PERP/btcusd_perp_20240808.gz",
}
#: Seconds of local receive time kept after the latest of the three first lines.
SLICE_SECONDS = 14.0


def write_slices(root: Path) -> dict[str, Path]:
    """Truncated copies of the three recordings, cut at one common receive time."""
    firsts = []
    for rel in FILES.values():
        with gzip.open(DATA / rel, "rb") as fh:
            firsts.append(int(fh.readline().split(b" ", 1)[0]))
    cutoff = max(firsts) + int(SLICE_SECONDS * 1e9)
    out = {}
    for symbol, rel in FILES.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(DATA / rel, "rb") as src, gzip.open(dst, "wb") as fh:
            for line in src:
                if int(line.split(b" ", 1)[0]) > cutoff:
                    break
                fh.write(line)
        out[symbol] = dst
    return out


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_slices(tmp_path_factory.mktemp("asset-slices"))


@pytest.fixture(scope="module")
def offline(slices: dict[str, Path]) -> tuple[dict[str, str], dict[int, dict[str, Any]]]:
    """The registry entries ingest writes and every asset report of the offline core."""
    feeds = offline_feeds(list(slices.values()), IngestOptions(symbol_map=SYMBOL_MAP))
    registry = {fr.feed.symbol: json.dumps(fr.feed.registration()) for fr in feeds}
    members = [m for s, raw in registry.items() if (m := assets.member(s, raw)) is not None]
    core = AssetCore("BTC", members, AssetParams())
    reports: dict[int, dict[str, Any]] = {}
    for fr in feeds:
        for entry in fr.entries():
            core.apply(fr.feed.symbol, entry)
    reports.update((t // MS, r) for t, r in core.advance())
    return registry, reports


@dataclass
class AssetRun:
    #: cycle ms -> the report of every asset candidate (writer block removed)
    candidates: dict[int, dict[str, Any]] = field(default_factory=dict)
    conflicts: list[int] = field(default_factory=list)
    http: dict[str, Any] = field(default_factory=dict)
    mcp: dict[str, Any] = field(default_factory=dict)
    tokens: set[int] = field(default_factory=set)
    exit_codes: dict[str, int | None] = field(default_factory=dict)


async def _get_asset(base: str) -> dict[str, Any]:
    async with Client(f"{base}/mcp", read_timeout_seconds=10) as client:
        result = await client.call_tool("get_asset", {"asset": "btc"})
    assert not result.is_error and result.structured_content is not None, result
    return result.structured_content


def run_asset_fleet(
    slices: dict[str, Path], registry: dict[str, str], speed: str, until_ms: int, workdir: Path
) -> AssetRun:
    files = tuple(slices.values())
    config = FleetConfig(
        calc_workers=1,
        speed=speed,
        replay_files=files,
        extra_env={
            "C8_INGEST_SYMBOL_MAP": SYMBOL_MAP,
            "C8_INGEST_NAUTILUS_LOG_LEVEL": "ERROR",
            # Wall-time stall judgements out of the way (a busy 2-core box).
            "C8_CALC_STALL_GRACE_MS": "60000",
        },
    )
    fleet = Fleet(config, workdir=workdir)
    run = AssetRun()
    try:
        fleet.redis.start()
        client = redis.Redis.from_url(fleet.redis.url)
        # Registered up front (as ingest will register them): the asset is assigned and
        # its writer reads every member's stream from its first entry.
        client.hset(keys.SYMBOLS, mapping=registry)  # type: ignore[arg-type]
        fleet.start_service("coordinator")
        fleet.start_service("publisher")
        fleet.start_service("mcp", {"C8_MCP_PORT": str(fleet.mcp_port)})
        fleet.start_calc()
        lease = keys.unit_key("lease", UNIT)
        assert wait_until(lambda: client.exists(lease), timeout=60), (
            f"asset lease not taken; dead: {[s.name for s in fleet.dead_services()]}"
        )
        fleet.start_service("ingest", fleet.ingest_env())
        reader = CandidateReader(client, [UNIT])

        def collect() -> bool:
            for cand in reader.read():
                report = json.loads(cand.report_json)
                assert report.pop("writer") == {"nodeId": cand.node_id, "writerToken": cand.token}
                run.tokens.add(cand.token)
                seen = run.candidates.setdefault(cand.event_ms, report)
                if seen != report:
                    run.conflicts.append(cand.event_ms)
            return until_ms in run.candidates

        assert wait_until(collect, timeout=120, interval=0.0), (
            f"asset cycle {until_ms} not emitted; dead: {[s.name for s in fleet.dead_services()]}"
        )
        base = f"http://127.0.0.1:{fleet.mcp_port}"

        def published() -> bool:
            raw = client.hget(keys.asset_report("BTC"), "event_ms")
            return raw is not None and int(raw) == until_ms

        assert wait_until(published, timeout=30), "last asset report not published"
        run.http = httpx.get(f"{base}/v1/assets/BTC", timeout=5).json()
        run.mcp = asyncio.run(_get_asset(base))
        client.close()
    finally:
        run.exit_codes = fleet.stop()
    return run


@pytest.fixture(scope="module")
def runs(
    slices: dict[str, Path],
    offline: tuple[dict[str, str], dict[int, dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, AssetRun]:
    registry, reports = offline
    until = max(reports)
    return {
        speed: run_asset_fleet(slices, registry, speed, until, tmp_path_factory.mktemp(speed))
        for speed in ("max", "5")
    }


def _top(st: PlainState) -> tuple[float, float, float, float, int]:
    b, a = max(st.bids), min(st.asks)
    return b, st.bids[b], a, st.asks[a], st.max_event_ms


def test_served_asset_report_matches_plain_books(
    runs: dict[str, AssetRun], slices: dict[str, Path]
) -> None:
    for run in runs.values():
        for served in (run.http, run.mcp):
            assert served["asset"] == "BTC"
            assert served["freshness"] in ("ok", "degraded", "down")  # the replay has ended
            t_ms = ns_from_iso_utc(served["generated_at"]) // MS
            stored = {k: v for k, v in served.items() if k not in ("writer", "updatedAt")}
            for k in ("freshness", "served_at", "report_write_age_ms", "data_age_ms"):
                stored.pop(k)
            expected = {k: v for k, v in run.candidates[t_ms].items() if k != "updatedAt"}
            expected.pop("data_age_ms")
            ages = [m.pop("data_age_ms") for m in stored["markets"]]
            want_ages = [m["data_age_ms"] for m in expected["markets"]]
            expected["markets"] = [
                {k: v for k, v in m.items() if k != "data_age_ms"} for m in expected["markets"]
            ]
            assert stored == expected
            # Ages only grow at read time.
            assert all(a is None or a >= w for a, w in zip(ages, want_ages, strict=True))
            assert served["writer"]["writerToken"] in run.tokens
    # Independently: the last boundary with a live book on every market.
    last_live = max(
        t
        for t, r in runs["max"].candidates.items()
        if all(m["status"] == "ok" for m in r["markets"])
    )
    tops = {s: plain_states_at([p], [last_live], _top)[last_live] for s, p in slices.items()}
    got = {m["symbol"]: m for m in runs["max"].candidates[last_live]["markets"]}
    for symbol, (b, bq, a, aq, ev) in tops.items():
        scale = 100 / b if symbol == "BTCUSDPERP" else 1.0
        assert got[symbol]["best_bid"]["price"] == b
        assert got[symbol]["best_ask"]["price"] == a
        assert got[symbol]["best_bid"]["qty"] == pytest.approx(bq * scale, rel=1e-9, abs=1e-8)
        ask_scale = 100 / a if symbol == "BTCUSDPERP" else 1.0
        assert got[symbol]["best_ask"]["qty"] == pytest.approx(aq * ask_scale, rel=1e-9, abs=1e-8)
        assert got[symbol]["data_age_ms"] == last_live - ev
    spot = (tops["BTCUSDTSPOT"][0] + tops["BTCUSDTSPOT"][2]) / 2
    for perp in ("BTCUSDT", "BTCUSDPERP"):
        mid = (tops[perp][0] + tops[perp][2]) / 2
        assert got[perp]["basis_bps"] == pytest.approx((mid - spot) / spot * 1e4, abs=1.01e-4)


def test_asset_reports_equal_across_speeds_and_offline(
    runs: dict[str, AssetRun], offline: tuple[dict[str, str], dict[int, dict[str, Any]]]
) -> None:
    _, reports = offline
    fast, paced = runs["max"], runs["5"]
    for run in (fast, paced):
        assert run.conflicts == []
        assert all(code == 0 for code in run.exit_codes.values()), run.exit_codes
        assert len(run.tokens) == 1  # one writer, no takeover
    assert len(fast.candidates) > 40
    assert fast.candidates == paced.candidates
    assert fast.candidates == {t: r for t, r in reports.items() if t in fast.candidates}
    # Every report the core emitted from the first entry on reached the candidates.
    assert set(fast.candidates) == set(reports)
    for report in list(fast.candidates.values())[::10]:
        assert asset_schema_errors({**report, "writer": {"nodeId": "x", "writerToken": 1}}) == []
    print(
        f"asset fleet: {len(fast.candidates)} asset reports equal at max and 5x and offline; "
        f"{sum(r['crossed'] for r in fast.candidates.values())} with a cross-market cross"
    )
