"""Read API: get_report latency and cost over HTTP and MCP, each beside a plain Redis HGET.

    uv run python bench/read_api.py [--seconds 2] [--http 1,10,100] [--mcp 1,10]
                                    [--mcp-post 1,10,100] [--updates 30]

Starts a private redis-server and one ``python -m services.mcp`` process (HTTP: JSON
routes + streamable HTTP MCP at /mcp), writes one realistic BTCUSDT report (20 levels a
side, the publisher's hash layout, rewritten every 250 ms like a live symbol) and runs,
from this process (uvloop, closed loop: each client sends its next request when the
previous answer arrived, ``--seconds`` per row after a short warm-up):

* HTTP: ``GET /v1/reports/BTCUSDT`` from N keep-alive aiohttp connections;
* MCP SDK: ``tools/call get_report`` from N Python SDK sessions (streamable HTTP, the
  SDK's default protocol 2026-07-28, no client cache). The SDK client validates every
  result against the tool's output schema in Python: at 10 sessions this process, not
  the server, is the bottleneck;
* MCP POST: the same ``tools/call`` as the SDK puts it on the wire, sent as raw POSTs
  from N aiohttp connections: what the server itself costs per MCP read;
* the floor of each row, in the same run at the same concurrency: a redis-py async
  ``HGET`` of the report's ``json`` field (the bytes every read has to fetch) from N
  concurrent clients. ``x floor`` = the row's latency / the floor's.

Per row: p50/p99 latency (ms), reads/s, and the mcp process's CPU per read (µs; its
``/proc`` utime+stime over the measured window / reads) and this process's (``client``:
the load generator's own CPU per read, over the same window). The load generator shares
the machine with the server: at high concurrency both compete for the same cores.

Update-to-notification latency: ``--updates`` report writes, each the way the publisher's
fenced publish does it (``HSET`` of the report hash + ``SPUBLISH keys.report_updates``, one
MULTI), spaced 300 ms apart (longer than the 250 ms per-subscriber rate limit, so none is
coalesced), while one SSE client (``GET /v1/stream?symbols=BTCUSDT``) and one MCP client
(``subscriptions/listen report://BTCUSDT``) are subscribed. Latency = arrival of the
event/notification - the moment the write was sent.

Goals (issue #12): HTTP p99 at 100 clients within 3x the floor; notification p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvloop
from redis.typing import EncodableT, FieldT

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from context8.redis_server import RedisServer, free_port  # noqa: E402
from shared import keys  # noqa: E402
from shared.report import schema_errors  # noqa: E402
from tests.mcp.helpers import make_report  # noqa: E402

SYMBOL = "BTCUSDT"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 0.5
UPDATE_SPACING_S = 0.3
MCP_VERSION = "2026-07-28"


# --- pure helpers -------------------------------------------------------------------------


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (nan for no samples)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def realistic_report(symbol: str, written_ms: int) -> dict[str, Any]:
    """A schema-valid report with 20 levels a side (the size calc publishes)."""
    report = make_report(symbol, updated_at_ms=written_ms)
    bid, ask = report["best_bid"]["price"], report["best_ask"]["price"]
    bids = [{"price": round(bid - 0.1 * i, 2), "qty": 1.0 + i} for i in range(20)]
    asks = [{"price": round(ask + 0.1 * i, 2), "qty": 1.0 + i} for i in range(20)]
    total = sum(level["qty"] for level in bids)
    report["depth"] = {
        "bids": bids,
        "asks": asks,
        "total_bid_qty": total,
        "total_ask_qty": total,
        "imbalance": 0.0,
    }
    report["best_bid"], report["best_ask"] = bids[0], asks[0]
    return report


def report_fields(report: dict[str, Any], written_ms: int) -> dict[FieldT, EncodableT]:
    """The hash fields fenced_publish.lua writes."""
    return {
        "json": orjson.dumps({**report, "updatedAt": written_ms}),
        "token": report["writer"]["writerToken"],
        "event_ms": written_ms - report["data_age_ms"],
        "node": report["writer"]["nodeId"],
        "updated_at": written_ms,
    }


@dataclass
class Row:
    name: str
    clients: int
    latencies_ms: list[float]
    seconds: float
    cpu_s: float = math.nan
    #: This (load-generating) process's CPU over the same window.
    client_cpu_s: float = math.nan

    @property
    def reads(self) -> int:
        return len(self.latencies_ms)

    @property
    def per_s(self) -> float:
        return self.reads / self.seconds if self.seconds else math.nan

    @property
    def cpu_us_per_read(self) -> float:
        return self.cpu_s / self.reads * 1e6 if self.reads else math.nan

    @property
    def client_us_per_read(self) -> float:
        return self.client_cpu_s / self.reads * 1e6 if self.reads else math.nan


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- processes ------------------------------------------------------------------------------


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class McpProcess:
    """``python -m services.mcp`` (HTTP) on a free port, stderr to a temp file."""

    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("C8_")}
        env.update(
            C8_REDIS_URL=redis_url,
            C8_MCP_PORT=str(self.port),
            C8_METRICS_PORT=str(free_port()),
            C8_LOG_LEVEL="WARNING",
            # The per-client rate limit stays in the path but never refuses: one bench
            # process is one client (loopback) sending far more than a client may.
            C8_MCP_RATE_LIMIT_RPS="1000000",
            C8_MCP_RATE_LIMIT_BURST="1000000",
        )
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.mcp"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.log.seek(0)
                    raise RuntimeError(f"mcp exited: {self.log.read().decode(errors='replace')}")
                try:
                    async with http.get(f"{self.base}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # polling interval; the deadline decides
        raise RuntimeError("mcp did not answer /healthz")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


# --- closed-loop load -------------------------------------------------------------------------


async def closed_loop(
    name: str,
    ops: list[Callable[[], Awaitable[None]]],
    seconds: float,
    cpu: Callable[[], float] | None,
) -> Row:
    """One worker per op, each looping until the deadline; latencies after the warm-up."""
    started = time.perf_counter()
    measure_from = started + WARMUP_S
    stop_at = measure_from + seconds
    latencies: list[float] = []
    cpu_start = math.nan
    client_start = math.nan

    async def worker(op: Callable[[], Awaitable[None]]) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            await op()
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append((t1 - t0) * 1e3)

    async def cpu_mark() -> None:
        nonlocal cpu_start, client_start
        await asyncio.sleep(WARMUP_S)
        cpu_start = cpu() if cpu else math.nan
        client_start = own_cpu_seconds()

    await asyncio.gather(cpu_mark(), *(worker(op) for op in ops))
    cpu_used = (cpu() - cpu_start) if cpu else math.nan
    return Row(name, len(ops), latencies, seconds, cpu_used, own_cpu_seconds() - client_start)


async def floor_row(redis_url: str, n: int, seconds: float) -> Row:
    client = aioredis.Redis.from_url(redis_url, max_connections=n + 4)
    key = keys.report(SYMBOL)

    async def hget() -> None:
        if await client.hget(key, "json") is None:
            raise RuntimeError("no report")

    try:
        return await closed_loop("redis HGET", [hget] * n, seconds, None)
    finally:
        await client.aclose()


async def http_row(server: McpProcess, n: int, seconds: float) -> Row:
    url = f"{server.base}/v1/reports/{SYMBOL}"
    connector = aiohttp.TCPConnector(limit=n, limit_per_host=n)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def get() -> None:
            async with http.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")

        return await closed_loop("HTTP GET", [get] * n, seconds, server.cpu)


async def mcp_row(server: McpProcess, n: int, seconds: float) -> Row:
    from mcp import Client

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                Client(f"{server.base}/mcp", read_timeout_seconds=30, cache=None)
            )
            for _ in range(n)
        ]

        def op(client: Client) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                result = await client.call_tool("get_report", {"symbol": SYMBOL})
                if result.is_error:
                    raise RuntimeError(f"tool error: {result.content}")

            return call

        return await closed_loop("MCP SDK", [op(c) for c in clients], seconds, server.cpu)


def tools_call_body(request_id: int) -> bytes:
    """A ``tools/call get_report`` as the Python SDK sends it (2026-07-28 envelope)."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": "get_report",
                "arguments": {"symbol": SYMBOL},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
                    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    )


async def mcp_post_row(server: McpProcess, n: int, seconds: float) -> Row:
    """The same tools/call as raw POSTs from aiohttp: the server's cost without the
    SDK client's (which validates every result against the output schema in Python)."""
    url = f"{server.base}/mcp"
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MCP_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "get_report",
    }
    body = tools_call_body(1)
    connector = aiohttp.TCPConnector(limit=n, limit_per_host=n)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post() -> None:
            async with http.post(url, data=body, headers=headers) as resp:
                answer = orjson.loads(await resp.read())
                if resp.status != 200 or "structuredContent" not in answer.get("result", {}):
                    raise RuntimeError(f"MCP POST {resp.status}: {answer}")

        return await closed_loop("MCP POST", [post] * n, seconds, server.cpu)


# --- notifications ------------------------------------------------------------------------------


async def notification_latency(
    server: McpProcess, redis_url: str, updates: int
) -> dict[str, list[float]]:
    """Write + announce ``updates`` reports; ms from send to arrival, per receiver."""
    from mcp import Client

    arrivals: dict[str, asyncio.Queue[float]] = {"SSE": asyncio.Queue(), "MCP": asyncio.Queue()}
    ready = {name: asyncio.Event() for name in arrivals}

    async def sse() -> None:
        url = f"{server.base}/v1/stream?symbols={SYMBOL}"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            initial = True
            async for line in resp.content:
                if line.startswith(b"event: report"):
                    if initial:  # the current report, sent on connect
                        initial = False
                        ready["SSE"].set()
                    else:
                        arrivals["SSE"].put_nowait(time.perf_counter())

    async def mcp_listen() -> None:
        async with (
            Client(f"{server.base}/mcp", read_timeout_seconds=30, cache=None) as client,
            client.listen(resource_subscriptions=[f"report://{SYMBOL}"]) as sub,
        ):
            ready["MCP"].set()
            async for _event in sub:
                arrivals["MCP"].put_nowait(time.perf_counter())

    tasks = [asyncio.create_task(sse()), asyncio.create_task(mcp_listen())]
    store = aioredis.Redis.from_url(redis_url)
    report = realistic_report(SYMBOL, now_ms())
    out: dict[str, list[float]] = {name: [] for name in arrivals}
    try:
        async with asyncio.timeout(15):
            await asyncio.gather(*(event.wait() for event in ready.values()))
        for _ in range(updates):
            written = now_ms()
            pipe = store.pipeline(transaction=True)
            pipe.hset(keys.report(SYMBOL), mapping=report_fields(report, written))
            pipe.spublish(keys.report_updates(SYMBOL), str(written))
            sent = time.perf_counter()
            await pipe.execute()
            for name, queue in arrivals.items():
                try:
                    arrived = await asyncio.wait_for(queue.get(), 2.0)
                except TimeoutError:
                    out[name].append(math.inf)  # lost: shows as inf in the percentiles
                else:
                    out[name].append((arrived - sent) * 1e3)
            await asyncio.sleep(UPDATE_SPACING_S)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.aclose()
    return out


# --- main ------------------------------------------------------------------------------------


async def keep_fresh(redis_url: str, stop: asyncio.Event) -> None:
    """Rewrite the report every 250 ms (no announcement) so it is served ``ok``."""
    store = aioredis.Redis.from_url(redis_url)
    report = realistic_report(SYMBOL, now_ms())
    assert schema_errors(report) == [], schema_errors(report)
    try:
        while not stop.is_set():
            await store.hset(keys.report(SYMBOL), mapping=report_fields(report, now_ms()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await store.aclose()


def fmt_table(pairs: list[tuple[Row, Row]]) -> str:
    head = (
        f"{'path':<15}{'N':>4} | {'p50 ms':>7}{'p99 ms':>8}{'reads/s':>9}{'cpu µs/read':>12}"
        f"{'client':>7}"
        f" | {'floor p50':>9}{'p99':>7}{'reads/s':>9} | {'x floor p50':>11}{'p99':>6}"
    )
    lines = [head, "-" * len(head)]
    for row, floor in pairs:
        p50, p99 = percentile(row.latencies_ms, 50), percentile(row.latencies_ms, 99)
        f50, f99 = percentile(floor.latencies_ms, 50), percentile(floor.latencies_ms, 99)
        lines.append(
            f"{row.name:<15}{row.clients:>4} | {p50:>7.2f}{p99:>8.2f}{row.per_s:>9.0f}"
            f"{row.cpu_us_per_read:>12.0f}{row.client_us_per_read:>7.0f}"
            f" | {f50:>9.2f}{f99:>7.2f}{floor.per_s:>9.0f}"
            f" | {p50 / f50:>11.1f}{p99 / f99:>6.1f}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    redis_server = RedisServer().start()
    stop = asyncio.Event()
    fresh = asyncio.create_task(keep_fresh(redis_server.url, stop))
    server = McpProcess(redis_server.url)
    try:
        await server.wait_ready()
        pairs: list[tuple[Row, Row]] = []
        for n in args.http:
            pairs.append(
                (
                    await http_row(server, n, args.seconds),
                    await floor_row(redis_server.url, n, args.seconds),
                )
            )
        for n in args.mcp:
            pairs.append(
                (
                    await mcp_row(server, n, args.seconds),
                    await floor_row(redis_server.url, n, args.seconds),
                )
            )
        for n in args.mcp_post:
            pairs.append(
                (
                    await mcp_post_row(server, n, args.seconds),
                    await floor_row(redis_server.url, n, args.seconds),
                )
            )
        print(fmt_table(pairs))
        failed = False
        http_100 = [(r, f) for r, f in pairs if r.name == "HTTP GET" and r.clients == 100]
        for row, floor in http_100:
            ratio = percentile(row.latencies_ms, 99) / percentile(floor.latencies_ms, 99)
            ok = ratio <= 3.0
            failed |= not ok
            print(
                f"goal HTTP p99 at 100 clients <= 3x floor: {ratio:.1f}x {'ok' if ok else 'MISSED'}"
            )
        if args.updates:
            stop.set()  # only announced writes from here on
            await fresh
            latency = await notification_latency(server, redis_server.url, args.updates)
            for name, xs in latency.items():
                p50, p99 = percentile(xs, 50), percentile(xs, 99)
                lost = sum(1 for x in xs if math.isinf(x))
                ok = p99 <= 50.0
                failed |= not ok
                print(
                    f"update -> {name} notification: n={len(xs)} p50={p50:.1f} ms "
                    f"p99={p99:.1f} ms max={max(xs):.1f} ms lost={lost} "
                    f"(goal p99 <= 50 ms: {'ok' if ok else 'MISSED'})"
                )
        return 1 if failed else 0
    finally:
        stop.set()
        await asyncio.gather(fresh, return_exceptions=True)
        server.stop()
        redis_server.stop()


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per row")
    parser.add_argument("--http", type=ints, default=[1, 10, 100], help="HTTP client counts")
    parser.add_argument("--mcp", type=ints, default=[1, 10], help="MCP SDK session counts")
    parser.add_argument(
        "--mcp-post", type=ints, default=[1, 10, 100], help="raw MCP POST client counts"
    )
    parser.add_argument("--updates", type=int, default=30, help="announced writes (0: skip)")
    args = parser.parse_args()
    sys.exit(uvloop.run(run(args)))


if __name__ == "__main__":
    main()
