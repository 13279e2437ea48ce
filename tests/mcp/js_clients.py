"""Running the npm MCP clients of tests/js (TypeScript SDK script, MCP Inspector CLI).

``tests/js/install.sh`` runs ``npm ci`` when node_modules does not match the committed
lockfile (``./run tests`` calls it first; the fixture below calls it again, a no-op then).
Node comes from the lockfile too (``node_modules/.bin/node``, Node 22).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.mcp.helpers import REPO, service_env

JS_DIR = REPO / "tests" / "js"
NODE_BIN = JS_DIR / "node_modules" / ".bin"
NODE = NODE_BIN / "node"
CLIENT_SCRIPT = JS_DIR / "mcp_client.mjs"
INSPECTOR = NODE_BIN / "mcp-inspector"


def ensure_js_clients() -> None:
    """Install tests/js from its lockfile unless already installed; fail loudly otherwise."""
    done = subprocess.run(
        [str(JS_DIR / "install.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"tests/js/install.sh failed ({done.returncode}): {done.stderr}")


def node_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the node tools: the pinned node first on PATH, a private HOME
    (the Inspector keeps a catalog and secrets under ~/.mcp-inspector)."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env.pop("NODE_OPTIONS", None)
    return env


def stdio_server_command() -> list[str]:
    return [sys.executable, "-m", "services.mcp", "--stdio"]


def stdio_server_env(redis_url: str) -> dict[str, str]:
    """What the stdio server needs (metrics on an OS-picked port: several may run at once)."""
    return service_env(redis_url, C8_METRICS_PORT="0")


def last_json_line(stdout: str) -> dict[str, Any]:
    """The summary a client script prints last (earlier lines are events)."""
    lines = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise AssertionError(f"no JSON on stdout: {stdout!r}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


def run_ts_client(
    args: list[str], env: dict[str, str], timeout: float = 60.0
) -> tuple[int, dict[str, Any], str]:
    """Run tests/js/mcp_client.mjs; (exit code, summary, stderr)."""
    done = subprocess.run(
        [str(NODE), str(CLIENT_SCRIPT), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, last_json_line(done.stdout), done.stderr


def run_inspector(
    args: list[str], env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``mcp-inspector --cli <args> --format json`` (the Inspector's scriptable CLI)."""
    return subprocess.run(
        [str(INSPECTOR), "--cli", *args, "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
