"""The committed Grafana dashboards are exactly what the SDK-based generator
(compose/grafana/generate.py, grafana-foundation-sdk) produces: no hand edits, no drift."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "compose" / "grafana"
SERVICES = ("ingest", "calc", "coordinator", "publisher", "mcp")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("c8_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_checked_in_dashboards_match_the_generator() -> None:
    expected = _generator().rendered()
    committed = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert sorted(committed) == sorted(expected), "run: uv run python compose/grafana/generate.py"
    for name, text in expected.items():
        assert committed[name] == text, f"{name} drifted; run compose/grafana/generate.py"


def test_one_dashboard_per_service_plus_fleet_overview() -> None:
    rendered = _generator().rendered()
    assert set(rendered) == {f"{s}.json" for s in (*SERVICES, "fleet")}
    for name, text in rendered.items():
        board = json.loads(text)
        assert board["uid"] == f"context8-{name.removesuffix('.json')}"
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not area & cells, f"{name}: {panel['title']} overlaps another panel"
            cells |= area


def test_fleet_overview_has_state_heatmaps_failovers_and_redis_panels() -> None:
    board = json.loads(_generator().rendered()["fleet.json"])
    by_type: dict[str, list[dict]] = {}
    for panel in board["panels"]:
        by_type.setdefault(panel["type"], []).append(panel)
    # Bucketed histogram heatmap (Prometheus heatmap format) and one Grafana calculates.
    heatmaps = by_type["heatmap"]
    assert {h["options"]["calculate"] for h in heatmaps} == {True, False}
    for h in heatmaps:
        if not h["options"]["calculate"]:
            assert all(t["format"] == "heatmap" and "_bucket" in t["expr"] for t in h["targets"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "context8_ingest_feed_state",
        "context8_calc_data_age_seconds",
        "context8_mcp_reports_served_total",
        "context8_coordinator_symbols_moved_total",
        "context8_calc_lease_acquisitions_total",
        "context8_calc_redis_errors_total",
    ):
        assert metric in exprs, metric
    assert len(by_type["stat"]) >= 2


def test_compose_provisions_the_generated_dashboards() -> None:
    compose = yaml.safe_load((REPO / "compose" / "docker-compose.yml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "context8.yml").read_text()
    )["providers"][0]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in volumes
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    for text in _generator().rendered().values():
        for panel in json.loads(text)["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"]
            assert all(t["datasource"]["uid"] == datasource["uid"] for t in panel["targets"])


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: each panel query becomes a recording rule.
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (apt-get install prometheus)"
    exprs = sorted(
        {
            target["expr"]
            for text in _generator().rendered().values()
            for panel in json.loads(text)["panels"]
            for target in panel["targets"]
        }
    )
    rules = [{"record": f"c8:panel_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
