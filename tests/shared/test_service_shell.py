"""shared.shell: the one shell all five services run in (settings, logs, metrics, Redis
clients, signals, exit codes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import redis

from shared.errors import ConfigError
from shared.settings import ServiceSettings
from shared.shell import EXIT_CONFIG, EXIT_CRASH, EXIT_OK, Shell, serve
from tests.conftest import REPO

SERVICES = ("ingest", "calc", "coordinator", "publisher", "mcp")


def run_service(name: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env={**os.environ, "C8_REDIS_URL": "redis://127.0.0.1:1/0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", SERVICES)
def test_a_bad_setting_is_a_configuration_error_with_exit_code_2(name: str) -> None:
    done = run_service(name, C8_LOG_LEVEL="LOUD")
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert f"services.{name}: configuration error" in done.stderr
    assert "unknown log level 'LOUD'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_configuration_refused_by_the_body_is_exit_code_2_too() -> None:
    done = run_service("ingest", C8_INGEST_SYMBOL_MAP="no-equals-sign")
    assert done.returncode == EXIT_CONFIG, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "ingest_config_error" in x]
    assert json.loads(line)["error"].startswith("bad symbol map item")
    assert "Traceback" not in done.stderr


def test_a_service_stops_on_sigterm_with_exit_code_0_and_says_so(redis_url: str) -> None:
    """The coordinator stands in for all five: the same shell drives each one."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.coordinator"],
        cwd=REPO,
        env={**os.environ, "C8_REDIS_URL": redis_url, "C8_NODE_ID": "shell-test"},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the shell's opening line: the service is up
    assert '"event": "coordinator_starting"' in first and '"metrics_port"' in first
    assert '"node_id": "shell-test"' in first
    assert "redis_url" not in first  # may carry credentials
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == EXIT_OK, rest
    assert '"event": "coordinator_stopped"' in rest and '"exit_code": 0' in rest


def _settings() -> ServiceSettings:
    return ServiceSettings(redis_url="redis://127.0.0.1:1/0", node_id="shell-unit")


def test_a_crash_in_the_body_is_logged_exit_code_1_and_clients_are_closed(
    redis_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    async def body(shell: Shell[ServiceSettings]) -> None:
        client = shell.redis()
        await client.client_setname("shell-unit-client")
        raise RuntimeError("boom")

    def settings() -> ServiceSettings:
        return ServiceSettings(redis_url=redis_url, node_id="shell-unit")

    assert serve("unit", settings, body) == EXIT_CRASH
    err = capfd.readouterr().err
    assert '"event": "unit_crashed"' in err and "RuntimeError: boom" in err
    assert '"exit_code": 1' in err
    with redis.Redis.from_url(redis_url) as check:
        names = [c["name"] for c in check.client_list()]
    assert "shell-unit-client" not in names  # the shell closed it


def test_a_config_error_from_the_body_is_exit_code_2(capfd: pytest.CaptureFixture[str]) -> None:
    async def body(shell: Shell[ServiceSettings]) -> None:
        raise ConfigError("C8_SOMETHING must be set")

    assert serve("unit", _settings, body) == EXIT_CONFIG
    err = capfd.readouterr().err
    assert '"event": "unit_config_error"' in err and "C8_SOMETHING must be set" in err


def test_a_taken_metrics_port_is_a_configuration_error(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        def settings() -> ServiceSettings:
            return ServiceSettings(metrics_port=port, node_id="shell-unit")

        async def body(shell: Shell[ServiceSettings]) -> None:
            raise AssertionError("the body must not run without its metrics server")

        assert serve("unit", settings, body) == EXIT_CONFIG
    err = capfd.readouterr().err
    assert '"event": "unit_config_error"' in err and '"error": "metrics server: ' in err


def test_a_body_that_returns_is_a_clean_stop() -> None:
    seen: list[int] = []

    async def body(shell: Shell[ServiceSettings]) -> None:
        seen.append(shell.metrics_port)

    assert serve("unit", _settings, body) == EXIT_OK
    assert seen and seen[0] > 0
