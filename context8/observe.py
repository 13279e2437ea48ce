"""A Prometheus beside a fleet on one machine: ``context8 demo --observe``.

The apt ``prometheus`` binary scrapes every service's metrics port (job ``context8``, a
``service`` label per process, as in compose) and evaluates the repo's alert rules, with
its data in the fleet's temporary directory. Loopback only. The config is pure
(``prometheus_config``); ``PrometheusProcess`` is the thin shell the demo and the
end-to-end test (tests/e2e/test_prometheus_scrape.py) share.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from context8.fleet import Fleet
from context8.redis_server import free_port
from shared.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
ALERT_RULES = REPO / "compose" / "prometheus" / "alerts.yml"
#: The job name the alert rules select (``up{job="context8"}``), as in compose.
JOB = "context8"


def prometheus_config(
    targets: Iterable[tuple[str, int]], rules_file: Path, interval_s: float = 1.0
) -> dict[str, Any]:
    """Scrape ``(service, metrics port)`` on loopback every ``interval_s``; evaluate the rules."""
    static = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}
        for service, port in targets
    ]
    # Prometheus durations take whole units: milliseconds.
    interval = f"{round(interval_s * 1000)}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{round(interval_s * 800)}ms",
            "evaluation_interval": interval,
        },
        "rule_files": [str(rules_file)],
        "scrape_configs": [{"job_name": JOB, "static_configs": static}],
    }


class PrometheusProcess:
    """``prometheus`` on a free loopback port, its config and data under ``workdir``."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        exe = shutil.which("prometheus")
        if exe is None:
            raise ConfigError(
                "prometheus is not installed: apt-get install prometheus (./run installs it)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        config_file = workdir / "prometheus.yml"
        config_file.write_text(json.dumps(config, indent=1))  # JSON is YAML
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def ready(self) -> bool:
        """True once it answers /-/ready; ConfigError if it exited (its log says why)."""
        if self.proc.poll() is not None:
            raise ConfigError(f"prometheus exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise ConfigError(f"prometheus not ready after {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a Prometheus HTTP API answer (ConfigError if it is not a success)."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise ConfigError(f"prometheus API {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (a scalar as one sample without labels)."""
        data = self.api("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/alerts")["alerts"])

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; its exit code (None if killed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def observe_fleet(
    fleet: Fleet, rules_file: Path = ALERT_RULES, workdir: Path | None = None
) -> PrometheusProcess:
    """A ready Prometheus scraping every service of ``fleet`` and evaluating ``rules_file``
    (data in ``workdir``, default the fleet's own directory)."""
    # service = the module (calc for every calc worker), as compose labels them.
    targets = [(svc.module.rsplit(".", 1)[-1], svc.metrics_port) for svc in fleet.services]
    prom = PrometheusProcess(
        workdir or fleet.workdir / "prometheus", prometheus_config(targets, rules_file)
    )
    try:
        prom.wait_ready()
    except BaseException:
        prom.stop()
        raise
    return prom
