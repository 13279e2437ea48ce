"""A TCP forwarder the chaos tests put between one process and Redis, to partition it.

It runs an asyncio loop in a daemon thread; the test thread calls ``cut(mode)`` and
``heal()``. Modes:

``hold_up``  one-way partition: bytes from the client are held (not forwarded) while
             replies from Redis still flow back. On ``heal`` the held bytes are delivered
             in order, even for connections the client has given up on meanwhile, so
             whatever the client sent during the cut reaches Redis LATE (delayed packets).
``hold_down`` replies held: requests still reach Redis and run, their replies wait
             (with ``drop`` after it: the client never gets them, a lost reply).
``hold``     both directions held; delivered in order on ``heal``.
``drop``     every connection is aborted at once and new ones are closed on accept
             (the client sees resets and refused reads until ``heal``).

``arm_hold_up(marker)`` cuts in ``hold_up`` mode at the exact moment the client sends a
chunk containing ``marker`` (e.g. the candidates stream key): that write, already sent by
the client while its lease was valid, is the first thing held and so reaches Redis late.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from context8.redis_server import free_port

MODES = ("hold_up", "hold_down", "hold", "drop")


@dataclass(eq=False)  # identity hash: links live in a set
class _Link:
    client_w: asyncio.StreamWriter
    upstream_w: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    """127.0.0.1:<port> -> target; ``url`` is the Redis URL clients should use."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.connections_total = 0
        #: Bytes client->server that were held during a cut and delivered on heal.
        self.delivered_late_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._mode: str | None = None
        self._up_open: asyncio.Event | None = None
        self._down_open: asyncio.Event | None = None
        self._marker: bytes | None = None
        #: Set (from the proxy thread) when an armed marker triggered the cut.
        self.triggered = threading.Event()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> str | None:
        return self._mode

    # --- control (test thread) -------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self, mode: str = "hold_up") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._call(self._cut(mode))

    def arm_hold_up(self, marker: bytes) -> None:
        """Cut (``hold_up``) as soon as the client sends ``marker``; see ``triggered``."""
        self.triggered.clear()
        self._call(self._arm(marker))

    def heal(self) -> None:
        self._call(self._heal())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- the loop ----------------------------------------------------------------------

    async def _start(self) -> None:
        self._up_open = asyncio.Event()
        self._down_open = asyncio.Event()
        self._up_open.set()
        self._down_open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _cut(self, mode: str) -> None:
        assert self._up_open is not None and self._down_open is not None
        self._mode = mode
        if mode == "drop":
            for link in list(self._links):
                self._abort(link)
            return
        if mode != "hold_down":
            self._up_open.clear()
        if mode in ("hold", "hold_down"):
            self._down_open.clear()

    async def _arm(self, marker: bytes) -> None:
        self._marker = marker

    async def _heal(self) -> None:
        assert self._up_open is not None and self._down_open is not None
        self._marker = None
        self._mode = None
        self._up_open.set()
        self._down_open.set()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._abort(link)
        await self._heal()

    def _abort(self, link: _Link) -> None:
        for w in (link.client_w, link.upstream_w):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._links.discard(link)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if self._mode == "drop":
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        link = _Link(client_w, up_w)
        self._links.add(link)
        assert self._up_open is not None and self._down_open is not None
        link.tasks = [
            asyncio.create_task(self._pump(client_r, up_w, self._up_open, upstream=True)),
            asyncio.create_task(self._pump(up_r, client_w, self._down_open, upstream=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._abort(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        gate: asyncio.Event,
        upstream: bool,
    ) -> None:
        """Copy reader -> writer; each chunk waits for the gate (held bytes keep order)."""
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, OSError):
                chunk = b""
            if upstream and self._marker is not None and self._marker in chunk:
                self._marker = None
                await self._cut("hold_up")
                self.triggered.set()
            held = not gate.is_set()
            await gate.wait()
            if not chunk:
                # The sender closed: pass the half-close on after what it sent.
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            if held and upstream:
                self.delivered_late_bytes += len(chunk)
            try:
                writer.write(chunk)
                await writer.drain()
            except (ConnectionError, OSError):
                return
