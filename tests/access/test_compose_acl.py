"""Compose runs Redis under the ACL users: the redis-acl one-shot writes the ACL file
(``python -m shared.acl``) from the passwords in the environment, every Redis node loads
it, and every service logs in as its own user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from context8.redis_server import ACL_FILE, ADMIN_PASSWORD_FILE, RedisServer
from shared import acl

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose" / "docker-compose.yml"
PASSWORDS = {s: f"pw-{s}" for s in acl.SERVICES}


def _config(*profile: str) -> dict:
    exe = Path(sys.executable).parent / "docker-compose"
    result = subprocess.run(
        [str(exe), "-f", str(COMPOSE), *profile, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={f"C8_REDIS_PASSWORD_{s.upper()}": p for s, p in PASSWORDS.items()}
        | {"C8_REDIS_ADMIN_PASSWORD": "pw-admin", "PATH": "/usr/bin:/bin"},
    )
    services: dict = json.loads(result.stdout)["services"]
    return services


def test_every_service_logs_in_as_its_own_user() -> None:
    services = _config("--profile", "cluster")
    for service in acl.SERVICES:
        env = services[service]["environment"]
        assert env["C8_REDIS_USERNAME"] == service
        assert env["C8_REDIS_PASSWORD"] == PASSWORDS[service]
    assert services["redis-acl"]["command"] == ["python", "-m", "shared.acl", "/acl/users.acl"]
    nodes = ["redis", *(n for n in services if n.startswith("redis-c") and n[7:].isdigit())]
    assert len(nodes) == 7
    for name in nodes:
        node = services[name]
        assert "--aclfile" in node["command"], name
        assert node["depends_on"]["redis-acl"]["condition"] == "service_completed_successfully"
        assert any(v["source"] == "redis-acl" for v in node["volumes"]), name
        assert "--user c8-admin" in " ".join(node["healthcheck"]["test"]), name


def test_the_written_acl_file_runs_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for service, password in PASSWORDS.items():
        monkeypatch.setenv(f"C8_REDIS_PASSWORD_{service.upper()}", password)
    monkeypatch.delenv("C8_REDIS_ADMIN_PASSWORD", raising=False)
    assert acl.main([str(tmp_path / ACL_FILE)]) == 2  # a password missing: no file
    assert not (tmp_path / ACL_FILE).exists()
    monkeypatch.setenv("C8_REDIS_ADMIN_PASSWORD", "pw-admin")
    assert acl.main([str(tmp_path / ACL_FILE)]) == 0
    (tmp_path / ADMIN_PASSWORD_FILE).write_text("pw-admin")
    with RedisServer(data_dir=tmp_path) as server:
        for service, password in PASSWORDS.items():
            client = redis.Redis(port=server.port, username=service, password=password)
            assert client.ping()
            client.close()
