"""The emulator as a subprocess on a free port, for tests and scripts.

    with EmulatorProcess([DATA / "binance-usdm/BTCUSDT/btcusdt_20240808.gz"], speed=20) as emu:
        env["C8_INGEST_VENUE_URLS"] = emu.venue_urls
        emu.fault("stall", "binance-usdm", "BTCUSDT")
        emu.stats()["markets"]["binance-usdm"]["violations"]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from context8.emulator.markets import http_base, ws_base
from context8.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]


class EmulatorError(RuntimeError):
    """The emulator did not come up, or a control call failed."""


class EmulatorProcess:
    """``python -m context8.emulator`` on 127.0.0.1 and a free port; stopped on exit."""

    def __init__(
        self,
        files: Sequence[Path | str] = (),
        *,
        speed: float = 1.0,
        start: str = "on-subscribe",
        copies: Sequence[str] = (),
        ping_interval: float = 20.0,
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        log_level: str = "INFO",
    ) -> None:
        self.files = [str(f) for f in files]
        self.speed = speed
        self.start_mode = start
        self.copies = list(copies)
        self.ping_interval = ping_interval
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_dir = tempfile.TemporaryDirectory(prefix="c8-emulator-")
        self.log_path = Path(self._log_dir.name) / "emulator.log"
        self._urls: dict[str, Any] | None = None

    # --------------------------------------------------------------- life cycle

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "context8.emulator",
            "--host", self.host,
            "--port", str(self.port),
            "--speed", repr(self.speed),
            "--start", self.start_mode,
            "--ping-interval", repr(self.ping_interval),
            "--log-level", self.log_level,
        ]
        for spec in self.copies:
            cmd += ["--copies", spec]
        return cmd + self.extra_args + self.files

    def start(self, timeout: float = 60.0) -> EmulatorProcess:
        """Start it and wait until its control API answers."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EmulatorError(
                    f"emulator exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            try:
                self._urls = self._call("GET", "/_emulator/urls", timeout=1.0)
                return self
            except (OSError, EmulatorError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmulatorError(
                        f"emulator did not answer within {timeout:g} s:\n{self.log_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        self.stop()
        self._log_dir.cleanup()

    def __enter__(self) -> EmulatorProcess:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -------------------------------------------------------------------- URLs

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def venue_urls(self) -> str:
        """The value for ``C8_INGEST_VENUE_URLS``."""
        return str(self.urls()["venue_urls"])

    def http_base(self, market: str) -> str:
        return http_base(self.host, self.port, market)

    def ws_base(self, market: str) -> str:
        return ws_base(self.host, self.port, market)

    # ------------------------------------------------------------- control API

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise EmulatorError(
                f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}"
            ) from None

    def urls(self) -> dict[str, Any]:
        if self._urls is None:
            self._urls = self._call("GET", "/_emulator/urls")
        return self._urls

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_emulator/stats")
        return result

    def market_stats(self, market: str) -> dict[str, Any]:
        result: dict[str, Any] = self.stats()["markets"][market]
        return result

    def symbol_stats(self, market: str, symbol: str) -> dict[str, Any]:
        result: dict[str, Any] = self.market_stats(market)["symbols"][symbol]
        return result

    def fault(
        self, fault: str, market: str, symbol: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Switch a fault on: ``disconnect``, ``stall``, ``resume``, ``drop`` (count),
        ``http_error`` (status, count|seconds, retry_after), ``slow_snapshot`` (delay),
        ``refuse`` (count|seconds)."""
        body: dict[str, Any] = {"fault": fault, "market": market, **params}
        if symbol is not None:
            body["symbol"] = symbol
        result: dict[str, Any] = self._call("POST", "/_emulator/fault", body)
        return result

    def clear(self, market: str | None = None, symbol: str | None = None) -> None:
        body = {k: v for k, v in (("market", market), ("symbol", symbol)) if v is not None}
        self._call("POST", "/_emulator/clear", body)

    def start_clocks(self, market: str | None = None, symbol: str | None = None) -> list[str]:
        body = {k: v for k, v in (("market", market), ("symbol", symbol)) if v is not None}
        result: list[str] = self._call("POST", "/_emulator/start", body)["started"]
        return result

    def derivatives(self, market: str, symbol: str) -> list[dict[str, Any]]:
        """The synthetic derivatives frames dispatched so far (and the open interest
        REST bodies answered, marked ``"rest": "openInterest"``), oldest first."""
        query = f"/_emulator/derivatives?market={market}&symbol={symbol}"
        result: list[dict[str, Any]] = self._call("GET", query)["frames"]
        return result

    def book(self, market: str, symbol: str, depth: int | None = None) -> dict[str, Any]:
        """The true book now: ``last_update_id``, ``bids`` / ``asks`` (best first)."""
        query = f"/_emulator/book?market={market}&symbol={symbol}"
        if depth is not None:
            query += f"&depth={depth}"
        result: dict[str, Any] = self._call("GET", query)
        return result
