"""Alert rules under unit test: `promtool test rules` runs compose/prometheus/alerts_test.yml,
and every alert in alerts.yml must have a case where it fires and one where it stays silent."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.test_compose_and_dashboards import _code_metric_names

PROMETHEUS = Path(__file__).resolve().parents[2] / "compose" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _cases() -> list[dict[str, Any]]:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return [case for test in tests for case in test.get("alert_rule_test", [])]


def test_promtool_rule_tests_pass() -> None:
    exe = shutil.which("promtool")
    assert exe, "promtool missing (apt-get install prometheus)"
    result = subprocess.run(
        [exe, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_expressions_use_real_metrics() -> None:
    known = _code_metric_names()
    for rule in _alerts():
        used = set(re.findall(r"\b(context8_[a-z0-9_]+)\b", rule["expr"]))
        assert not used - known, f"{rule['alert']} uses unknown metrics {used - known}"


def test_rule_tests_load_the_rules_file() -> None:
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == [RULES.name]


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    names = [rule["alert"] for rule in _alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    cases = _cases()
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert not set(names) - fires, f"alerts never shown firing: {sorted(set(names) - fires)}"
    assert not set(names) - silent, f"alerts never shown silent: {sorted(set(names) - silent)}"
    assert not (fires | silent) - set(names), "test cases for alerts that do not exist"


def test_alerts_with_a_for_window_are_checked_before_it_ends() -> None:
    """A `for:` alert needs a silent case earlier than its first firing case (pending then)."""
    cases = _cases()
    for rule in _alerts():
        if "for" not in rule:
            continue
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        first_fire = min(_seconds(c["eval_time"]) for c in mine if c.get("exp_alerts"))
        assert any(
            not c.get("exp_alerts") and _seconds(c["eval_time"]) < first_fire for c in mine
        ), rule["alert"]


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)
