"""The fleet in a terminal: ``context8 demo`` (bundled recordings) and ``context8 live``
(live venues), with a view that refreshes in place, or headless JSON lines.

Readers' path only: the view reads reports over the mcp service's HTTP API, exactly as
a user would, so what it shows is what clients get.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from context8.fleet import Fleet, FleetConfig, wait_until
from context8.observe import PrometheusProcess, observe_fleet
from shared.errors import ConfigError
from shared.report import schema_errors

STATUS_STYLE = {"ok": "green", "degraded": "yellow", "down": "red"}


class _Stop(Exception):
    """Raised from the signal handler to leave the view loop."""


def fetch_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def fetch_reports(base: str, symbols: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The current report of each symbol that has one (over the HTTP API)."""
    out: dict[str, dict[str, Any]] = {}
    for symbol in symbols:
        try:
            out[symbol] = fetch_json(f"{base}/v1/reports/{symbol}")
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError, ConnectionError):
            continue
    return out


def _price(value: Any) -> str:
    """A price with the decimals its size needs (BTC 2, XRP 4, below 1: 6)."""
    if value is None:
        return "—"
    return _fmt(value, 2 if abs(value) >= 100 else 4 if abs(value) >= 1 else 6)


def _fmt(value: Any, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(
    fleet: Fleet,
    symbols: tuple[str, ...],
    title: str,
    reports: dict[str, dict[str, Any]],
    started: float,
) -> Group:
    table = Table(title=f"context8 — {title}")
    for col, justify in (
        ("symbol", "left"),
        ("mid", "right"),
        ("best bid", "right"),
        ("best ask", "right"),
        ("spread bps", "right"),
        ("imbalance", "right"),
        ("data age", "right"),
        ("status", "center"),
        ("writer", "left"),
        ("token", "right"),
        ("event time", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for symbol in symbols:
        r = reports.get(symbol)
        if r is None:  # no report yet: nothing from the venue so far
            waited = f"none for {time.monotonic() - started:,.0f} s"
            empty = ["—"] * 5
            down = Text("down", style=STATUS_STYLE["down"])
            table.add_row(symbol, *empty, waited, down, "—", "—", "no data yet")
            continue
        bid, ask = r.get("best_bid") or {}, r.get("best_ask") or {}
        status = r["ingestion"]["status"]
        table.add_row(
            symbol,
            _price(r.get("mid_price")),
            f"{_price(bid.get('price'))} × {_fmt(bid.get('qty'), 3)}",
            f"{_price(ask.get('price'))} × {_fmt(ask.get('qty'), 3)}",
            _fmt(r.get("spread_bps"), 4),
            _fmt(r["depth"].get("imbalance"), 3),
            f"{r['data_age_ms']:,} ms",
            Text(status, style=STATUS_STYLE.get(status, "")),
            r["writer"]["nodeId"],
            str(r["writer"]["writerToken"]),
            r["generated_at"],
        )
    procs = "  ".join(
        f"{s.name}:{'up' if s.running() else f'exit {s.returncode()}'}" for s in fleet.services
    )
    footer = Text(
        f"running {time.monotonic() - started:,.0f} s · http://127.0.0.1:{fleet.mcp_port} "
        f"(MCP at /mcp) · {procs}\nCtrl-C stops everything.",
        style="dim",
    )
    problems = [Text(line, style="red") for line in venue_problems(fleet)]
    return Group(table, *problems, footer)


#: Ingest log events that say whether a market's venue answers (``venues/live.py``).
_VENUE_EVENTS = ("venue unreachable", "venue connected", "venue rate limit")


def venue_problems(fleet: Fleet, tail_bytes: int = 65_536) -> list[str]:
    """What stops ingest from reaching its venues now, one line per market: the newest
    of its connect / unreachable / rate-limit log events, when it is not a connect."""
    latest: dict[str, dict[str, Any]] = {}
    for svc in fleet.services:
        if svc.module != "services.ingest":
            continue
        try:
            with svc.log_path.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, 2) - tail_bytes))
                lines = fh.read().splitlines()
        except OSError:
            continue
        for raw in lines:
            if not raw.startswith(b"{") or b'"venue ' not in raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if str(event.get("event", "")).startswith(_VENUE_EVENTS) and "market" in event:
                latest[f"{svc.name} {event['market']}"] = event
    out = []
    for where, event in sorted(latest.items()):
        if event["event"] == "venue connected":
            continue
        detail = ", ".join(
            f"{k}={v}"
            for k, v in event.items()
            if k in ("url", "error", "status", "retry_in_s", "retry_after_s")
        )
        out.append(f"{where}: {event['event']}: {detail}")
    return out


def run_fleet(
    config: FleetConfig,
    symbols: tuple[str, ...],
    title: str,
    duration: float | None,
    observe: bool = False,
) -> int:
    """Start the fleet, show reports (or run ``duration`` s headless), stop cleanly;
    ``observe``: a Prometheus beside it (context8/observe.py)."""
    console = Console(stderr=duration is not None)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    fleet = Fleet(config)
    base = f"http://127.0.0.1:{fleet.mcp_port}"
    code = 0
    prom: PrometheusProcess | None = None
    try:
        console.print(f"starting redis-server and the fleet in {fleet.workdir} …")
        fleet.start()
        if not wait_until(lambda: _healthy(base), timeout=60):
            console.print("[red]the mcp service did not become healthy[/red]")
            _print_dead(console, fleet)
            return 1
        started = time.monotonic()
        console.print(f"reports at {base}/v1/reports/<SYMBOL>, MCP at {base}/mcp")
        if observe:
            try:
                prom = observe_fleet(fleet)
            except ConfigError as exc:
                console.print(f"[red]--observe: {exc}[/red]", highlight=False)
                return 1
            console.print(
                f"Prometheus at {prom.url} (alerts: {prom.url}/alerts, targets: {prom.url}/targets)"
            )
        if duration is None:
            view = render(fleet, symbols, title, {}, started)
            with Live(view, console=console, refresh_per_second=8) as live:
                while True:
                    reports = fetch_reports(base, symbols)
                    live.update(render(fleet, symbols, title, reports, started))
                    time.sleep(0.25)
        # Headless: run for the duration, watching for services that die.
        deadline = started + duration
        while time.monotonic() < deadline:
            if fleet.dead_services():
                _print_dead(console, fleet)
                return 1
            time.sleep(0.25)
        reports = fetch_reports(base, symbols)
        for line in venue_problems(fleet):
            console.print(line, style="red", markup=False, highlight=False)
        for symbol in symbols:
            report = reports.get(symbol)
            if report is None:
                console.print(f"[red]no report for {symbol}[/red]")
                code = 1
                continue
            errors = schema_errors(report)
            if errors:
                console.print(f"[red]{symbol} report violates the schema: {errors}[/red]")
                code = 1
            sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        return code
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if prom is not None:
            prom.stop()
        codes = fleet.stop()
        # None means it had to be killed; anything but 0 is an unclean stop.
        bad = {name: c for name, c in codes.items() if c != 0}
        if bad:
            console.print(f"[yellow]services that did not exit cleanly: {bad}[/yellow]")
            _print_dead(console, fleet)
        fleet.cleanup()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def _print_dead(console: Console, fleet: Fleet) -> None:
    for svc in fleet.services:
        code = svc.returncode()
        if code not in (None, 0):
            console.print(f"[red]{svc.name} exited with {code}; last log lines:[/red]")
            console.print(svc.log_tail(15), markup=False, highlight=False)
