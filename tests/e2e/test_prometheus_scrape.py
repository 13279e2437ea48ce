"""A real Prometheus scraping the whole fleet on the bundled data (issue 14, item 3).

The fleet runs as in ``./run demo`` (1x replay, two calc workers, each service under its
ACL user); Prometheus (the apt ``prometheus`` binary) scrapes every service's metrics port
each second and evaluates the repository's alert rules each second. Through its HTTP API:

- every rule of ``compose/prometheus/alerts.yml`` loads and evaluates;
- every panel query of ``compose/grafana/dashboards/*.json`` returns series on the healthy
  fleet, except the fault-only ones listed in ``FAULT_ONLY`` (with the reason);
- no alert expression holds on the healthy fleet, and no alert is firing;
- stalling ingest (SIGSTOP) fires ``Context8StaleReports`` for both symbols and
  ``Context8ServiceDown`` for ingest; SIGKILL of the calc worker holding BTCUSDT's lease
  fires ``Context8ServiceDown`` for it while the survivor takes both symbols over; SIGKILL
  of the survivor fires ``Context8SymbolWithoutWriter``.

The rules are loaded from a copy whose ``for:`` windows are divided by ``FOR_SCALE`` (30 s
-> 6 s), so a fault fires within the test's budget; the expressions are unchanged. Each
firing is asserted within its shortened window plus how long the expression takes to
become true and the scrape/evaluation delay (``SLACK_S``).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from context8.fleet import DEMO_SYMBOLS, Fleet, FleetConfig, wait_until
from context8.observe import PrometheusProcess, observe_fleet
from shared import keys

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "compose" / "prometheus" / "alerts.yml"
DASHBOARDS = REPO / "compose" / "grafana" / "dashboards"

#: ``for:`` windows of the loaded copy of the rules are divided by this.
FOR_SCALE = 5
#: Scrape + evaluation delay and headroom for a loaded CI machine.
SLACK_S = 10.0

#: Panel queries over metrics that only get series when something goes wrong (or in a
#: mode the demo does not run): metric -> why it is empty on the healthy demo fleet.
FAULT_ONLY: dict[str, str] = {
    "context8_ingest_parse_rejections_total": "unusable venue lines: the recording has none",
    "context8_ingest_reconnects_total": "venue WebSocket reconnects: live mode only",
    "context8_ingest_resubscribes_total": "book re-subscriptions (gap, reconnect): live only",
    "context8_ingest_connect_failures_total": "venue unreachable: live mode only",
    "context8_ingest_takeovers_total": "a hot standby taking a feed over: standby + failure",
    "context8_ingest_claims_lost_total": "a writer losing its feed claim to a standby",
    "context8_calc_redis_errors_total": "calc's failed Redis calls: none while Redis is up",
}

#: Grafana's built-in variables, as Grafana would expand them for a 5-minute view.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1s", "__range": "5m"}


# --- pure helpers ------------------------------------------------------------------------


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def shortened_rules(text: str, scale: int) -> dict[str, Any]:
    """The rules file with every ``for:`` divided by ``scale`` (expressions unchanged)."""
    doc = yaml.safe_load(text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{int(seconds(rule['for']) * 1000) // scale}ms"
    return dict(doc)


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' panels included."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels") or [])
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    out.append((str(panel.get("title", "")), str(target["expr"])))

    walk(dashboard.get("panels") or [])
    return out


def expand(expr: str, values: dict[str, str]) -> str:
    """Grafana variables (``$x``, ``${x}``, ``${x:fmt}``, ``[[x]]``) replaced by values."""

    def sub(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        assert name in values, f"no test value for Grafana variable ${name} in {expr!r}"
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", sub, expr)


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """A concrete value for each of the dashboard's template variables."""
    values = dict(GRAFANA_BUILTINS)
    for var in (dashboard.get("templating") or {}).get("list") or []:
        name = var["name"]
        if "symbol" in name.lower():
            values[name] = "BTCUSDT"
        elif var.get("type") == "datasource":
            values[name] = "prometheus"
        else:
            # Instances, nodes, ...: every value ("All"), as a regex matcher expects.
            values[name] = ".+"
    return values


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(context8_[a-z0-9_]+?)(?:_bucket|_count|_sum)?\b", expr))


def test_shortened_rules_keep_expressions_and_scale_windows() -> None:
    text = (
        "groups:\n- name: g\n  rules:\n"
        "  - {alert: A, expr: up == 0, for: 30s}\n  - {alert: B, expr: up > 1}\n"
    )
    rules = shortened_rules(text, 5)["groups"][0]["rules"]
    assert rules[0] == {"alert": "A", "expr": "up == 0", "for": "6000ms"}
    assert rules[1] == {"alert": "B", "expr": "up > 1"}


def test_expand_grafana_variables() -> None:
    values = {"symbol": "BTCUSDT", "__rate_interval": "1m"}
    assert (
        expand('rate(x{symbol="$symbol"}[$__rate_interval]) + y{s="${symbol:raw}"}', values)
        == 'rate(x{symbol="BTCUSDT"}[1m]) + y{s="BTCUSDT"}'
    )
    with pytest.raises(AssertionError, match="nope"):
        expand("x{a=~'$nope'}", values)


# --- Prometheus as a process ----------------------------------------------------------------


def start_prometheus(fleet: Fleet, workdir: Path) -> PrometheusProcess:
    """Scraping every service as ``context8 demo --observe`` does, with the alert rules'
    ``for:`` windows shortened (FOR_SCALE) so faults fire within the test."""
    rules_file = workdir / "alerts.yml"
    rules_file.write_text(yaml.safe_dump(shortened_rules(RULES.read_text(), FOR_SCALE)))
    return observe_fleet(fleet, rules_file, workdir)


@dataclass
class Observed:
    fleet: Fleet
    prom: PrometheusProcess
    redis: redis.Redis
    #: What the fault tests measured (printed at the end for the issue's closing note).
    timings: dict[str, float]


def _metrics_answer(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _settled_in_redis(client: redis.Redis, fleet: Fleet) -> bool:
    calcs = {s.name for s in fleet.services if s.module == "services.calc"}
    members = {_text(m) for m in client.zrange(keys.NODES, 0, -1)}
    assignment = {_text(k): _text(v) for k, v in client.hgetall(keys.ASSIGNMENT).items()}
    return members == calcs and all(
        _text(client.get(keys.lease(sym))) == assignment.get(sym)
        and bool(client.exists(keys.report(sym)))
        for sym in DEMO_SYMBOLS
    )


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    workdir = Path(tempfile.mkdtemp(prefix="context8-prom-"))
    fleet = Fleet(FleetConfig(calc_workers=2, speed="1"))
    prom: PrometheusProcess | None = None
    client = redis.Redis.from_url(fleet.redis_url)
    try:
        fleet.start()
        # Scrape the healthy fleet: every service answering, both calc workers members,
        # each symbol leased by its assigned worker and reported on. Startup (a worker
        # not yet joined, leases not yet taken) is not what the alerts are about.
        assert wait_until(
            lambda: (
                all(_metrics_answer(s.metrics_port) for s in fleet.services)
                and _settled_in_redis(client, fleet)
            ),
            timeout=90,
            interval=0.2,
        ), [(s.name, s.returncode(), s.log_tail(5)) for s in fleet.services]
        prom = start_prometheus(fleet, workdir)
        yield Observed(fleet, prom, client, {})
    finally:
        for svc in fleet.services:  # a stopped ingest must take SIGTERM at teardown
            svc.signal(signal.SIGCONT)
        if prom is not None:
            prom.stop()
        client.close()
        fleet.stop()
        fleet.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


# --- the healthy fleet ------------------------------------------------------------------------


def test_every_service_is_scraped_and_every_rule_loads(observed: Observed) -> None:
    prom, fleet = observed.prom, observed.fleet

    def all_up() -> bool:
        up = prom.query('up{job="context8"} == 1')
        return len(up) == len(fleet.services)

    assert wait_until(all_up, timeout=60, interval=0.5), (
        prom.api("/api/v1/targets")["activeTargets"],
        [s.name for s in fleet.dead_services()],
    )
    services = {r["metric"]["service"] for r in prom.query('up{job="context8"}')}
    assert services == {"coordinator", "publisher", "mcp", "calc", "ingest"}

    names = [r["alert"] for r in alert_rules()]

    def rules_evaluated() -> list[dict[str, Any]] | None:
        loaded = [r for g in prom.api("/api/v1/rules")["groups"] for r in g["rules"]]
        return loaded if all(r["health"] == "ok" for r in loaded) and loaded else None

    assert wait_until(rules_evaluated, timeout=15, interval=0.5), prom.log_tail()
    loaded = rules_evaluated()
    assert loaded is not None
    assert sorted(r["name"] for r in loaded) == sorted(names)


def _fleet_settled(observed: Observed) -> bool:
    """Both symbols leased by a worker and reported on, as Prometheus sees it."""
    owned = observed.prom.query("sum(context8_calc_symbols_owned)")
    return bool(owned) and float(owned[0]["value"][1]) == len(DEMO_SYMBOLS)


def test_every_dashboard_query_returns_series_on_a_healthy_fleet(observed: Observed) -> None:
    prom = observed.prom
    queries: list[tuple[str, str, str]] = []  # (dashboard, panel, expr)
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        values = variable_values(dashboard)
        queries += [
            (path.stem, title, expand(expr, values)) for title, expr in panel_queries(dashboard)
        ]
    assert queries, f"no panel queries in {DASHBOARDS}"
    used = set().union(*(metric_names(q[2]) for q in queries))
    assert not FAULT_ONLY.keys() - used, "FAULT_ONLY lists metrics no panel shows"
    assert wait_until(lambda: _fleet_settled(observed), timeout=60, interval=0.5)

    empty: dict[tuple[str, str, str], None] = {q: None for q in queries}
    mcp_url = f"http://127.0.0.1:{observed.fleet.mcp_port}/v1/reports/BTCUSDT"

    def all_answered() -> bool:
        # Read as a client would (the demo's view does the same), so mcp has traffic.
        with urllib.request.urlopen(mcp_url, timeout=5) as resp:
            assert resp.status == 200
        for q in list(empty):
            if prom.query(q[2]):
                del empty[q]
        return all(metric_names(q[2]) & FAULT_ONLY.keys() for q in empty)

    # rate()/histogram_quantile need two scrapes of a series; a lazily created labelled
    # counter needs its first event.
    wait_until(all_answered, timeout=45, interval=1.0)
    missing = [q for q in empty if not metric_names(q[2]) & FAULT_ONLY.keys()]
    assert not missing, "panel queries without series on a healthy fleet:\n" + "\n".join(
        f"  {d} / {t}: {e}" for d, t, e in missing
    )
    print(
        f"\n{len(queries)} panel queries, {len(queries) - len(empty)} with series, "
        f"fault-only and empty: {[q[2] for q in empty]}"
    )


def test_no_alert_fires_on_a_healthy_fleet(observed: Observed) -> None:
    prom = observed.prom
    assert wait_until(lambda: _fleet_settled(observed), timeout=60, interval=0.5)
    rules = alert_rules()

    def holding() -> dict[str, list[dict[str, Any]]]:
        return {r["alert"]: hits for r in rules if (hits := prom.query(r["expr"]))}

    # Only holds if something is wrong: Prometheus started on the settled fleet.
    assert wait_until(lambda: not holding(), timeout=10, interval=0.5), holding()
    # Nothing fired since Prometheus started.
    fired = prom.query('ALERTS{alertstate="firing"}[1h]')
    assert not fired, fired
    # Pending is allowed: Prometheus's first evaluations may see the coordinator's first
    # scrape before any calc worker's (no lease holder yet, as Prometheus sees it).
    pending = {a["metric"]["alertname"] for a in prom.query('ALERTS{alertstate="pending"}[1h]')}
    print(f"\nalerts pending for a moment as scraping began: {sorted(pending) or 'none'}")


# --- faults -----------------------------------------------------------------------------------


def _for_s(alert: str) -> float:
    rule = next(r for r in alert_rules() if r["alert"] == alert)
    return seconds(rule.get("for", "0s")) / FOR_SCALE


def _wait_firing(
    observed: Observed,
    expected: dict[str, tuple[str, dict[str, str]]],
    timeout: float,
    since: float | None = None,
) -> dict[str, float]:
    """Seconds from ``since`` (default: now) until each expected alert (name ->
    (alertname, labels)) is firing; fails ``timeout`` seconds after ``since``."""
    start = time.monotonic() if since is None else since
    seen: dict[str, float] = {}

    def all_fired() -> bool:
        firing = [a["labels"] for a in observed.prom.alerts() if a["state"] == "firing"]
        for key, (alert, labels) in expected.items():
            if key not in seen and any(
                f["alertname"] == alert and all(f.get(k) == v for k, v in labels.items())
                for f in firing
            ):
                seen[key] = round(time.monotonic() - start, 1)
        return len(seen) == len(expected)

    assert wait_until(all_fired, timeout=start + timeout - time.monotonic(), interval=0.25), (
        seen,
        expected,
        observed.prom.alerts(),
    )
    observed.timings.update(seen)
    return seen


def test_stalled_ingest_fires_stale_reports(observed: Observed) -> None:
    ingest = observed.fleet.service("ingest")
    ingest.signal(signal.SIGSTOP)
    try:
        expected = {
            f"Context8StaleReports({s})": ("Context8StaleReports", {"symbol": s})
            for s in DEMO_SYMBOLS
        }
        expected["Context8ServiceDown(ingest)"] = ("Context8ServiceDown", {"service": "ingest"})
        # Data age passes 5 s after calc's stall grace (1.5 s) and 5 s of silence more.
        fired = _wait_firing(observed, expected, 5 + 1.5 + _for_s("Context8StaleReports") + SLACK_S)
        assert fired["Context8ServiceDown(ingest)"] <= _for_s("Context8ServiceDown") + SLACK_S
    finally:
        ingest.signal(signal.SIGCONT)


def test_killed_calc_owner_fires_service_down_and_survivor_takes_over(observed: Observed) -> None:
    fleet, prom = observed.fleet, observed.prom
    owner = observed.redis.get(keys.lease("BTCUSDT"))
    assert owner is not None
    victim = fleet.service(_text(owner))
    survivor = next(s for s in fleet.services if s.module == victim.module and s is not victim)
    victim.signal(signal.SIGKILL)
    started = time.monotonic()
    # The survivor holds both leases, as scraped: no symbol is left without a writer.
    held = f'context8_calc_symbols_owned{{instance="127.0.0.1:{survivor.metrics_port}"}}'
    assert wait_until(
        lambda: prom.query(f"{held} == {len(DEMO_SYMBOLS)}"), timeout=SLACK_S, interval=0.25
    )
    observed.timings["calc takeover (scraped)"] = round(time.monotonic() - started, 1)
    _wait_firing(
        observed,
        {
            "Context8ServiceDown(calc)": (
                "Context8ServiceDown",
                {"service": "calc", "instance": f"127.0.0.1:{victim.metrics_port}"},
            )
        },
        _for_s("Context8ServiceDown") + SLACK_S,
        since=started,
    )
    # Its `for:` window (30 s, 6 s here) outlasts a takeover: at most pending, never firing.
    since_kill = f"{int(time.monotonic() - started) + 2}s"
    without = 'ALERTS{alertname="Context8SymbolWithoutWriter", alertstate="%s"}[' + since_kill + "]"
    assert not prom.query(without % "firing")
    observed.timings["Context8SymbolWithoutWriter pending during takeover"] = float(
        bool(prom.query(without % "pending"))
    )


def test_no_calc_left_fires_symbol_without_writer(observed: Observed) -> None:
    fleet = observed.fleet
    survivors = [s for s in fleet.services if s.module == "services.calc" and s.running()]
    assert len(survivors) == 1
    survivors[0].signal(signal.SIGKILL)
    _wait_firing(
        observed,
        {"Context8SymbolWithoutWriter": ("Context8SymbolWithoutWriter", {})},
        _for_s("Context8SymbolWithoutWriter") + SLACK_S,
    )
    print(
        f"\nalert firing times (s after the fault; for: windows / {FOR_SCALE}): {observed.timings}"
    )
