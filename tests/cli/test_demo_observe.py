"""``context8 demo --observe`` (``./run demo --observe``): a real Prometheus beside the
demo fleet, scraping every service, with the repo's alert rules loaded; stopped with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

SERVICES = {"coordinator", "publisher", "mcp", "calc", "ingest"}


def _api(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())["data"]


def _prometheus_url(proc: subprocess.Popen[str], deadline: float) -> str:
    """The URL the demo prints on stderr (the console may wrap it)."""
    assert proc.stderr is not None
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
        found = re.search(r"Prometheus at\s+(http://127\.0\.0\.1:\d+)", "".join(seen.split("\n")))
        if found:
            return found.group(1)
    raise AssertionError(f"no Prometheus URL printed:\n{seen[-2000:]}")


def test_demo_observe_scrapes_every_service_and_loads_the_alerts() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "context8", "demo", "--duration", "25", "--observe"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _prometheus_url(proc, time.monotonic() + 60)
        up: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and up != SERVICES:
            targets = _api(f"{url}/api/v1/targets")["activeTargets"]
            up = {t["labels"]["service"] for t in targets if t["health"] == "up"}
            time.sleep(0.25)  # poll interval of a deadline loop, not synchronisation
        assert up == SERVICES
        rules = [r for g in _api(f"{url}/api/v1/rules")["groups"] for r in g["rules"]]
        assert len(rules) >= 13 and all(r["health"] in ("ok", "unknown") for r in rules)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert {json.loads(line)["symbol"] for line in out.splitlines()} == {"BTCUSDT", "ETHUSDT"}
    with pytest.raises(OSError):  # stopped with the fleet
        urllib.request.urlopen(f"{url}/-/ready", timeout=2)
