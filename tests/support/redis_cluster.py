"""A real Redis Cluster on loopback for tests (redis-server + redis-cli), with replicas
and the faults cluster tests inject.

``LocalCluster(masters=3)`` is three primaries and no replicas (every slot covered);
``LocalCluster(masters=3, replicas=1, node_timeout_ms=1000)`` gives each primary a
replica that is promoted fast when its primary dies (``cluster-replica-validity-factor
0``: a replica may take over however long it has been cut off). Faults:

* ``kill_primary_of(key)`` kill -9s the primary serving ``key``'s slot;
* ``wait_promoted(...)`` waits until its replica has taken the slot over;
* ``add_replica(primary)`` starts a fresh node and makes it a synced replica of
  ``primary`` (a killed node is replaced, not restarted: an old primary that comes back
  with its old slot map could serve clients until it hears it was replaced).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from context8.redis_server import free_port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(check: Callable[[], Any], deadline: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``check`` (Redis errors count as not yet) until truthy or ``deadline``."""
    while True:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster: timed out waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Promotion:
    """A primary killed and the replica that took its slots over."""

    slot: int
    old: int
    new: int
    #: kill -9 -> the replica reports itself primary (s).
    seconds: float


class LocalCluster:
    """``masters`` primaries with ``replicas`` replicas each, all 16384 slots covered."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 2000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="context8-cluster-"))
        #: Every node started, in order (the first ``masters`` were created primaries).
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    # --- processes -----------------------------------------------------------------------

    def _new_port(self) -> int:
        while True:
            port = cluster_port()
            if port not in self.ports:
                self.ports.append(port)
                return port

    def _spawn(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir()
        self.procs[port] = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--cluster-replica-validity-factor",
                "0",
                "--cluster-allow-replica-migration",
                "no",
                "--cluster-require-full-coverage",
                "no",
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                str(node_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self, port: int, **kwargs: Any) -> Any:
        """A plain (non-cluster) client of one node."""
        return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2, **kwargs)

    def _ask(self, port: int, *command: Any) -> Any:
        client = self.client(port)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def alive(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def start(self, timeout: float = 30.0) -> LocalCluster:
        ports = [self._new_port() for _ in range(self.masters * (1 + self.replicas))]
        for port in ports:
            self._spawn(port)
        deadline = time.monotonic() + timeout
        for port in ports:
            _wait(lambda p=port: self._ask(p, "PING"), deadline, f"node {port} up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        for port in ports:
            _wait(
                lambda p=port: self._ask(p, "CLUSTER INFO")["cluster_state"] == "ok",
                deadline,
                f"node {port} cluster_state ok",
            )
        for port in self.replica_ports():
            self.wait_synced(port, deadline - time.monotonic())
        return self

    # --- topology ------------------------------------------------------------------------

    def _role(self, port: int) -> str:
        role = self._ask(port, "ROLE")
        return str(role[0].decode() if isinstance(role[0], bytes) else role[0])

    def primary_ports(self) -> list[int]:
        return [p for p in self.alive() if self._role(p) == "master"]

    def replica_ports(self) -> list[int]:
        return [p for p in self.alive() if self._role(p) == "slave"]

    def node_id(self, port: int) -> str:
        return str(self._ask(port, "CLUSTER MYID").decode())

    def primary_of(self, key: str | int) -> int:
        """The port of the live primary that claims ``key``'s slot (or the slot itself)."""
        slot = key if isinstance(key, int) else key_slot(key.encode())
        for port in self.primary_ports():
            for start, end, *_nodes in self._ask(port, "CLUSTER SLOTS"):
                if start <= slot <= end and _nodes[0][1] == port:
                    return port
        raise LookupError(f"no live primary serves slot {slot}")

    def replicas_of(self, primary: int) -> list[int]:
        out = []
        for port in self.replica_ports():
            info = self._ask(port, "INFO", "replication")
            if info.get("master_port") == primary:
                out.append(port)
        return out

    # --- faults --------------------------------------------------------------------------

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)

    def kill_primary_of(self, key: str | int) -> tuple[int, list[int]]:
        """kill -9 the primary of ``key``'s slot; (its port, its replicas' ports)."""
        primary = self.primary_of(key)
        replicas = self.replicas_of(primary)
        self.kill(primary)
        return primary, replicas

    def wait_promoted(
        self, key: str | int, old: int, killed_at: float, timeout: float = 20.0
    ) -> Promotion:
        """Wait until a replica of ``old`` serves ``key``'s slot as primary."""
        slot = key if isinstance(key, int) else key_slot(key.encode())
        deadline = time.monotonic() + timeout

        def promoted() -> int | None:
            for port in self.alive():
                if port != old and self._role(port) == "master":
                    for start, end, *nodes in self._ask(port, "CLUSTER SLOTS"):
                        if start <= slot <= end and nodes[0][1] == port:
                            return port
            return None

        new = _wait(promoted, deadline, f"a replica to take slot {slot} over from {old}")
        return Promotion(slot, old, new, time.monotonic() - killed_at)

    def wait_synced(self, port: int, timeout: float = 20.0) -> None:
        """Until the replica on ``port`` is linked to its primary and fully synced."""

        def synced() -> bool:
            info = self._ask(port, "INFO", "replication")
            return bool(
                info.get("role") == "slave"
                and info.get("master_link_status") == "up"
                and not info.get("master_sync_in_progress")
            )

        _wait(synced, time.monotonic() + timeout, f"replica {port} in sync", interval=0.05)

    def add_replica(self, primary: int, timeout: float = 20.0) -> int:
        """A fresh node, joined to the cluster as a synced replica of ``primary``."""
        port = self._new_port()
        self._spawn(port)
        deadline = time.monotonic() + timeout
        _wait(lambda: self._ask(port, "PING"), deadline, f"node {port} up")
        self._ask(port, "CLUSTER MEET", "127.0.0.1", primary)
        primary_id = self.node_id(primary)
        _wait(
            lambda: self._ask(port, "CLUSTER COUNT-FAILURE-REPORTS", primary_id) is not None,
            deadline,
            f"node {port} to learn the cluster",
        )
        _wait(
            lambda: self._ask(port, "CLUSTER REPLICATE", primary_id),
            deadline,
            f"node {port} to replicate {primary}",
        )
        self.wait_synced(port, deadline - time.monotonic())
        return port

    # --- housekeeping ------------------------------------------------------------------------

    def flushall(self) -> None:
        for port in self.primary_ports():
            client = self.client(port)
            client.flushall()
            client.script_flush()
            client.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
