"""A real 3-master Redis Cluster on loopback for tests (redis-server + redis-cli)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

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


class LocalCluster:
    """Three masters, no replicas, all 16384 slots covered."""

    def __init__(self, masters: int = 3) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="context8-cluster-"))
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = cluster_port()
            if port not in self.ports:
                self.ports.append(port)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, timeout: float = 20.0) -> LocalCluster:
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.procs.append(
                subprocess.Popen(
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
                        "2000",
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
            )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(lambda p=port: redis.Redis(port=p).ping(), deadline, f"node {port} up")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        for port in self.ports:
            self._wait(
                lambda p=port: redis.Redis(port=p).cluster("INFO")["cluster_state"] == "ok",
                deadline,
                f"node {port} cluster_state ok",
            )
        return self

    @staticmethod
    def _wait(check: object, deadline: float, what: str) -> None:
        while True:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster start: timed out waiting for {what}")
            time.sleep(0.05)  # start-up polling, outside any test

    def flushall(self) -> None:
        for port in self.ports:
            client = redis.Redis(port=port)
            client.flushall()
            client.script_flush()
            client.close()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
