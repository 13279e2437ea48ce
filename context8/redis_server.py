"""An embedded redis-server: free port, private data dir, torn down on stop.

Used by the demo and by the test suite, so both run against a real Redis.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from shared.acl import ADMIN_USER, acl_file

#: Where listening ports are picked: below Linux's default ephemeral range.
_LISTEN_PORTS = range(20_000, 32_768)
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now and that the OS will not hand to another socket.

    A port the OS picked (bind to 0) comes from the ephemeral range, and once released
    the OS may give it to any outgoing connection (e.g. a client connecting to Redis)
    before the service it was meant for binds it: "Address already in use". Ports are
    therefore picked outside that range, and never twice in one process.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in _LISTEN_PORTS if not low <= p <= high and p not in _handed_out]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no such port left
        sock.bind((host, 0))
        fallback: int = sock.getsockname()[1]
        return fallback


class RedisServerError(RuntimeError):
    """redis-server is missing or did not come up."""


#: In a server's data dir: its ACL users (``shared.acl.acl_file``) and the admin password.
ACL_FILE = "users.acl"
ADMIN_PASSWORD_FILE = "admin.password"


def write_acl(data_dir: Path, passwords: dict[str, str], admin_password: str) -> None:
    """Make the server of ``data_dir`` run under ACL users: the default user off, one
    user per service, an admin user for tools and tests (``RedisServer.url``). Files are
    owner-only; a server restarted on the same dir keeps its users, as AOF keeps data."""
    for name, text in ((ACL_FILE, acl_file(passwords, admin_password)),
                       (ADMIN_PASSWORD_FILE, admin_password)):
        path = data_dir / name
        path.touch(mode=0o600)
        path.write_text(text)


class RedisServer:
    """A redis-server process on 127.0.0.1 with its own temp dir.

    ``appendonly`` enables AOF (fsync every write), so a SIGKILLed server restarted on
    the same dir and port keeps what it acknowledged. A data dir holding ``users.acl``
    (``write_acl``) runs the server under those ACL users, and ``url`` logs in as the
    admin user.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        binary: str = "redis-server",
    ) -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise RedisServerError(
                f"{binary} not found on PATH; install it "
                "(Debian/Ubuntu: apt-get install redis-server)"
            )
        self.binary = exe
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="context8-redis-"))
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    def admin_password(self) -> str | None:
        """The admin user's password when the server runs under ACL users, else None."""
        if not (self.data_dir / ACL_FILE).exists():
            return None
        return (self.data_dir / ADMIN_PASSWORD_FILE).read_text()

    @property
    def url(self) -> str:
        """The server's URL (as the admin user when it runs under ACL users)."""
        password = self.admin_password()
        auth = "" if password is None else f"{ADMIN_USER}:{quote(password, safe='')}@"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def plain_url(self) -> str:
        """The server's URL without credentials (for a service with its own user)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--protected-mode",
            "yes",
        ]
        if (self.data_dir / ACL_FILE).exists():
            args += ["--aclfile", str((self.data_dir / ACL_FILE).resolve())]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        password = self.admin_password()
        client = redis.Redis(
            port=self.port,
            username=None if password is None else ADMIN_USER,
            password=password,
            socket_connect_timeout=0.2,
            socket_timeout=0.5,
        )
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with {self.proc.returncode}; "
                        f"see {self.data_dir}/redis.log"
                    )
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RedisServerError(f"redis-server not answering on port {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (fault injection); the data dir is kept."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, remove_dir: bool = True) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if remove_dir and self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
