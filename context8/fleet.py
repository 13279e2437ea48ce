"""Running the whole fleet on one machine: an embedded redis-server plus one process
per service, each with its own environment, log file and metrics port.

Used by ``context8 demo``, ``context8 live`` and by the end-to-end tests, so all exercise
the real ``python -m services.<name>`` processes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from context8.redis_server import RedisServer, free_port, write_acl
from services.ingest.settings import DEMO_FILES
from shared import acl

REPO = Path(__file__).resolve().parent.parent
DEMO_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")

#: Stop order on shutdown: the source first, so nothing downstream waits on it.
STOP_ORDER = ("ingest", "calc", "publisher", "mcp", "coordinator")


@dataclass
class ServiceProcess:
    """One running service process."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None if still running after ``timeout`` seconds."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@dataclass
class FleetConfig:
    calc_workers: int = 2
    #: Replay speed for ingest: "1" (paced on event time), "N" (Nx) or "max".
    speed: str = "1"
    replay_files: tuple[Path, ...] = DEMO_FILES
    #: Live mode instead of the replay: ``C8_INGEST_LIVE_SYMBOLS``
    #: (``<venue>-<market>:<SYMBOL>,...``).
    live_symbols: str = ""
    #: Ingest processes beyond the first, configured for the same symbols: hot standbys.
    ingest_standbys: int = 0
    #: Extra environment for every service (e.g. cycle lengths in tests).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Run on this Redis (e.g. a ``redis+cluster://`` URL) instead of an embedded server.
    redis_url: str = ""
    log_level: str = "INFO"
    #: Run each service under its own least-privilege ACL user (shared/acl.py) on the
    #: embedded server, the default user off. Not applied to an external ``redis_url``.
    acl: bool = True


class Fleet:
    """Redis and every service as real processes, torn down without leftovers."""

    def __init__(self, config: FleetConfig | None = None, workdir: Path | None = None) -> None:
        self.config = config or FleetConfig()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="context8-fleet-"))
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(data_dir=self.workdir / "redis")
        (self.workdir / "redis").mkdir(exist_ok=True)
        #: Service -> file with its Redis password (the users are in the server's dir,
        #: so a server restarted on it, as the chaos tests do, keeps them).
        self.password_files: dict[str, Path] = {}
        if self.config.acl:
            self._write_acl()
        self.mcp_port = free_port()
        self.services: list[ServiceProcess] = []
        self._calc_seq = 0

    # --- lifecycle -------------------------------------------------------------

    def _write_acl(self) -> None:
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        passwords = {name: secrets.token_urlsafe(24) for name in acl.SERVICES}
        write_acl(self.workdir / "redis", passwords, secrets.token_urlsafe(24))
        for name, password in passwords.items():
            path = secrets_dir / f"{name}.password"
            path.touch(mode=0o600)
            path.write_text(password)
            self.password_files[name] = path

    @property
    def redis_url(self) -> str:
        """The fleet's Redis for tools and tests (the admin user under ACL)."""
        return self.config.redis_url or self.redis.url

    def redis_env(self, service: str) -> dict[str, str]:
        """How ``service`` reaches Redis: its own ACL user on the embedded server."""
        if self.config.redis_url or service not in self.password_files:
            return {"C8_REDIS_URL": self.redis_url}
        return {
            "C8_REDIS_URL": self.redis.plain_url,
            "C8_REDIS_USERNAME": service,
            "C8_REDIS_PASSWORD_FILE": str(self.password_files[service]),
        }

    def start(self) -> Fleet:
        if not self.config.redis_url:
            self.redis.start()
        self.start_service("coordinator")
        self.start_service("publisher")
        self.start_service("mcp", {"C8_MCP_PORT": str(self.mcp_port)})
        for _ in range(self.config.calc_workers):
            self.start_calc()
        for n in range(1 + self.config.ingest_standbys):
            self.start_ingest(f"ingest-{n + 1}" if self.config.ingest_standbys else None)
        return self

    def ingest_env(self) -> dict[str, str]:
        """What ingest replays (or, live, which venue symbols it follows)."""
        if self.config.live_symbols:
            return {"C8_INGEST_MODE": "live", "C8_INGEST_LIVE_SYMBOLS": self.config.live_symbols}
        return {
            "C8_INGEST_MODE": "replay",
            "C8_INGEST_SPEED": self.config.speed,
            "C8_INGEST_REPLAY_FILES": ",".join(str(p) for p in self.config.replay_files),
        }

    def start_ingest(self, instance: str | None = None) -> ServiceProcess:
        env = self.ingest_env()
        if instance is not None:
            env["C8_NODE_ID"] = f"{instance}-{os.getpid()}"
        return self.start_service("ingest", env, instance=instance)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
        env.update(
            {
                "C8_REDIS_URL": self.redis_url,
                "C8_LOG_LEVEL": self.config.log_level,
                "C8_LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.config.extra_env)
        return env

    def start_service(
        self, name: str, env: dict[str, str] | None = None, instance: str | None = None
    ) -> ServiceProcess:
        label = instance or name
        port = free_port()
        full_env = self.base_env()
        full_env.update(self.redis_env(name))
        full_env.update(self.config.extra_env)
        full_env.update(env or {})
        full_env["C8_METRICS_PORT"] = str(port)
        full_env.setdefault("C8_NODE_ID", f"{label}-{os.getpid()}")
        log_path = self.logs / f"{label}.log"
        svc = ServiceProcess(label, f"services.{name}", full_env, log_path, port)
        log = log_path.open("ab")
        # Own session: a Ctrl-C in the terminal reaches only the supervisor, which then
        # stops the services in order with SIGTERM.
        svc.proc = subprocess.Popen(
            [sys.executable, "-m", svc.module],
            cwd=REPO,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.services.append(svc)
        return svc

    def start_calc(self) -> ServiceProcess:
        self._calc_seq += 1
        label = f"calc-{self._calc_seq}"
        return self.start_service("calc", {"C8_NODE_ID": label}, instance=label)

    def service(self, label: str) -> ServiceProcess:
        for svc in self.services:
            if svc.name == label:
                return svc
        raise KeyError(label)

    def dead_services(self) -> list[ServiceProcess]:
        """Services that exited although nobody stopped them."""
        return [s for s in self.services if s.proc is not None and not s.running()]

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every service (in ``STOP_ORDER``), SIGKILL stragglers, stop Redis.

        Returns each service's exit code (None if it had to be killed).
        """
        codes = self.stop_services(timeout)
        if not self.config.redis_url:
            self.redis.stop(remove_dir=False)
        return codes

    def stop_services(self, timeout: float = 10.0) -> dict[str, int | None]:
        """``stop`` without stopping Redis (to look at it afterwards)."""
        codes: dict[str, int | None] = {}

        def order(s: ServiceProcess) -> int:
            base = s.module.rsplit(".", 1)[-1]
            return STOP_ORDER.index(base) if base in STOP_ORDER else len(STOP_ORDER)

        for svc in sorted(self.services, key=order):
            if svc.running():
                svc.signal(signal.SIGTERM)
                code = svc.wait(timeout)
                if code is None and svc.proc is not None:
                    svc.proc.kill()
                    svc.proc.wait(5)
                codes[svc.name] = code
            else:
                codes[svc.name] = svc.returncode()
        return codes

    def cleanup(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.cleanup()


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is truthy or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
