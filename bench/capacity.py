"""Fleet capacity: how many BTCUSDT-like symbols the whole fleet keeps fresh.

    uv run python bench/capacity.py                                   # 20,40,80,120 symbols, 2 calc
    uv run python bench/capacity.py --symbols 60,100 --calc-workers 1,2 --ingest 1,2
    uv run python bench/capacity.py --find --calc-workers 2           # bisect the largest fresh N

N renamed copies of the bundled USD-M BTCUSDT recording (``BTC001USDT`` ... : the same
frames with the stream names and ``s`` fields renamed, so every copy bursts at the same
moments, the worst case) are written once to a temporary directory in the kit layout
(``binance-usdm/<SYM>/<file>``), ``--data-seconds`` of it (default 240 s of the
2024-07-18/19 session, snapshot included). Each run starts the whole fleet as real
processes (``context8.fleet.Fleet``: redis-server, coordinator, publisher, mcp, the calc
workers, ingest replaying at 1x; with ``--ingest 2`` two ingest processes, each given
half of the symbols' files), waits until every symbol has a report, lets it settle for
``--warmup`` s and measures a ``--window`` s steady window:

* report lag: now - the report's write time (``c8:report:{SYM}`` ``updated_at``), sampled
  every 100 ms for every symbol (a report every 250 ms gives 0-250 ms when all is well);
* data age: the report's ``data_age_ms`` (exchange-time age of its newest data);
* reports per symbol per second: the symbol's ``c8:audit:{SYM}`` entries in the window
  (ideal 4: one per 250 ms cycle);
* CPU seconds (``/proc/<pid>/stat`` utime + stime) and RSS (``VmRSS``) of every service
  process and of redis-server, and the machine's busy share (``/proc/stat``);
* Redis commands/s (``total_commands_processed``, the bench's own commands subtracted);
* symbols moved (coordinator ``symbols_moved_total``), calc nodes dropped
  (``nodes_pruned_total``), writer token changes seen;
* backlog: the end-to-end delay (now - the report's cycle time; at 1x a constant offset
  while the fleet keeps up) over the window's first and last 5 s, and the candidates
  pending in the publishers' group at the start and the end. It grows if the fleet falls
  behind.

Fresh = p99 report lag <= 500 ms, >= 3.8 reports/s per symbol (95 %), no growing backlog
(end-to-end delay growth <= 250 ms). ``--find`` bisects between the largest fresh N and
the smallest stale one of ``--symbols`` down to ``--resolution``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from context8.emulator.copies import Renamer, copy_names  # noqa: E402
from context8.fleet import Fleet, FleetConfig  # noqa: E402
from shared import keys  # noqa: E402
from shared.settings import ServiceSettings  # noqa: E402

SOURCE = (
    REPO / "data/binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    REPO / "data/binance-usdm/BTCUSDT/btcusdt_20240719.gz",
)
ORIGINAL = "BTCUSDT"
#: Freshness criteria.
MAX_P99_LAG_MS = 500
MIN_REPORTS_PER_S = 3.8
MAX_BACKLOG_GROWTH_MS = 250
CLK_TCK = os.sysconf("SC_CLK_TCK")
_AGE_RE = re.compile(rb'"data_age_ms":(\d+)')


# --- data -----------------------------------------------------------------------------


def source_text(seconds: float) -> str:
    """The first ``seconds`` (receive time) of the recording, as text."""
    lines: list[str] = []
    first: int | None = None
    for src in SOURCE:
        with gzip.open(src, "rt") as fh:
            for line in fh:
                ts = int(line.split(" ", 1)[0])
                first = ts if first is None else first
                if ts - first > seconds * 1e9:
                    break
                lines.append(line)
    text = "".join(lines)
    assert '"lastUpdateId"' in text, "the slice must include the REST snapshot"
    return text


def write_copies(root: Path, text: str, count: int, files: dict[str, Path]) -> None:
    """Add renamed copies to ``files`` (kit layout under ``root``) until it has ``count``."""
    for name in copy_names(ORIGINAL, count)[len(files) :]:
        path = root / "binance-usdm" / name / f"{name.lower()}_20240718.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", compresslevel=1) as fh:
            fh.write(Renamer(ORIGINAL, name).text(text))
        files[name] = path


def ideal_lag(path: Path) -> tuple[float, float]:
    """Report lag (p50, p99 ms) of an infinitely fast fleet on this recording.

    A cycle's report can only be written once the first entry past its boundary arrives
    (or the stall watchdog's grace passed): gaps in the recorded feed are a floor under
    the lag whatever the fleet does. Write times here: that entry's pacing time at 1x.
    """
    from services.ingest.offline import offline_entries

    writes: list[int] = []
    key = 0
    nxt: int | None = None
    for e in next(iter(offline_entries([path]).values())):
        if e.kind == "status":
            continue
        key = max(key, e.event_ns)
        if nxt is None:
            nxt = -(-e.event_ns // 250_000_000) * 250_000_000
        elif e.event_ns > nxt:
            writes.append(key)
            nxt = (e.event_ns - 1) // 250_000_000 * 250_000_000 + 250_000_000
    lags: list[float] = []
    j = 0
    for x in range(writes[0] + 20 * 10**9, writes[-1], 10_000_000):  # after 20 s
        while j + 1 < len(writes) and writes[j + 1] <= x:
            j += 1
        lags.append((x - writes[j]) / 1e6)
    return percentile(lags, 50), percentile(lags, 99)


# --- process and redis probes -----------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def scrape(port: int, name: str) -> float:
    """Sum of a metric's samples on a service's /metrics (0 if absent)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return math.nan
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(xs: list[float], p: float) -> float:
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def id_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def stage_delays(
    client: redis.Redis, symbols: list[str], partitions: int, t0_ms: int, t1_ms: int
) -> dict[str, tuple[float, float]]:
    """Where a report's time goes, for ``symbols`` (p50, p99 in ms over their reports).

    For each report written in the window (its ``c8:audit`` entry): the market-data entry
    that closed its cycle (the first after the boundary, in stream order), its append time
    (entry id) against when ingest should have appended it at 1x (event time + the run's
    smallest append offset), the candidate's append time and the write time.
    ``ingest``: pacing delay of the closing entry; ``calc``: that entry's append -> the
    candidate's; ``publisher``: the candidate's append -> the write.
    """
    delays: dict[str, list[float]] = {"ingest": [], "calc": [], "publisher": []}
    cand: dict[tuple[str, int], int] = {}
    wanted = set(symbols)
    for p in {keys.candidate_partition(s, partitions) for s in symbols}:
        for eid, fields in client.xrange(keys.candidates(p), min=f"{t0_ms - 5000}-0"):
            sym = fields[b"s"].decode()
            if sym in wanted:
                cand.setdefault((sym, int(fields[b"e"])), id_ms(eid))
    for sym in symbols:
        closing: dict[int, tuple[int, int]] = {}  # boundary ms -> (entry id ms, event ms)
        offset: int | None = None
        nxt: int | None = None
        for eid, fields in client.xrange(keys.stream(sym), min=f"{t0_ms - 5000}-0"):
            if fields[b"k"] == b"status":
                continue
            event_ms = int(fields[b"et"]) // 1_000_000
            at = id_ms(eid)
            offset = at - event_ms if offset is None else min(offset, at - event_ms)
            if nxt is None:
                nxt = event_ms // 250 * 250 + 250
                continue
            while event_ms > nxt:
                closing[nxt] = (at, event_ms)
                nxt += 250
        for eid, fields in client.xrange(keys.audit(sym), min=f"{t0_ms}-0", max=f"{t1_ms}-0"):
            t = int(fields[b"event_ms"])
            written = id_ms(eid)
            if t not in closing or (sym, t) not in cand or offset is None:
                continue
            appended, event_ms = closing[t]
            delays["ingest"].append(appended - (event_ms + offset))
            delays["calc"].append(cand[(sym, t)] - appended)
            delays["publisher"].append(written - cand[(sym, t)])
    return {k: (percentile(v, 50), percentile(v, 99)) for k, v in delays.items()}


# --- one run ----------------------------------------------------------------------------


@dataclass
class Result:
    symbols: int
    calc: int
    ingest: int
    lag_p50: float = math.nan
    lag_p99: float = math.nan
    lag_max: float = math.nan
    age_p50: float = math.nan
    age_p99: float = math.nan
    reports_mean: float = math.nan
    reports_min: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)  # service -> % of one core
    rss: dict[str, float] = field(default_factory=dict)  # service -> MB
    machine_busy: float = math.nan  # % of all cores
    bench_cpu: float = math.nan
    ops: float = math.nan
    moved: float = math.nan
    pruned: float = math.nan
    token_changes: int = 0
    e2e_start: float = math.nan
    e2e_end: float = math.nan
    pending_start: int = 0
    pending_end: int = 0
    #: stage -> (p50, p99) ms, over a sample of the symbols
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    note: str = ""

    @property
    def growth(self) -> float:
        return self.e2e_end - self.e2e_start

    @property
    def fresh(self) -> bool:
        return (
            self.lag_p99 <= MAX_P99_LAG_MS
            and self.reports_mean >= MIN_REPORTS_PER_S
            and self.growth <= MAX_BACKLOG_GROWTH_MS
            and not self.note
        )


class Sampler(threading.Thread):
    """Every 100 ms: each symbol's report write time and cycle time; every 1 s its age."""

    def __init__(self, client: redis.Redis, symbols: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.symbols = symbols
        self.stop = threading.Event()
        self.lags: list[float] = []
        self.ages: list[float] = []
        #: (monotonic s, median end-to-end delay ms of the sample)
        self.e2e: list[tuple[float, float]] = []
        self.tokens: dict[str, set[bytes]] = {s: set() for s in symbols}
        self.commands = 0
        #: (monotonic s, worst lag ms, symbols over the lag limit) per sample (``-v``).
        self.timeline: list[tuple[float, float, int]] = []

    def run(self) -> None:
        report_keys = [keys.report(s) for s in self.symbols]
        tick = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            with_json = tick % 10 == 0
            fields = ["updated_at", "event_ms", "token"] + (["json"] if with_json else [])
            pipe = self.client.pipeline(transaction=False)
            for key in report_keys:
                pipe.hmget(key, fields)
            rows = pipe.execute()
            now_ms = time.time() * 1000
            self.commands += len(report_keys)
            delays = []
            worst, late = 0.0, 0
            for symbol, row in zip(self.symbols, rows, strict=True):
                if row[0] is None:
                    continue
                lag = now_ms - int(row[0])
                self.lags.append(lag)
                worst = max(worst, lag)
                late += lag > MAX_P99_LAG_MS
                delays.append(now_ms - int(row[1]))
                self.tokens[symbol].add(row[2])
                if with_json and row[3] is not None:
                    m = _AGE_RE.search(row[3])
                    if m:
                        self.ages.append(int(m.group(1)))
            if delays:
                self.e2e.append((time.monotonic(), statistics.median(delays)))
            self.timeline.append((time.monotonic(), worst, late))
            tick += 1
            next_at += 0.1
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def pending(client: redis.Redis, partitions: int) -> int:
    total = 0
    for p in range(partitions):
        with contextlib.suppress(redis.ResponseError):
            total += int(client.xpending(keys.candidates(p), keys.PUBLISHER_GROUP)["pending"])
    return total


def server_ms(client: redis.Redis) -> int:
    s, us = client.time()
    return int(s) * 1000 + int(us) // 1000


def run_once(
    files: dict[str, Path],
    n: int,
    calc: int,
    ingest: int,
    warmup: float,
    window: float,
    extra_env: dict[str, str],
    verbose: bool,
    renice: dict[str, int] | None = None,
) -> Result:
    symbols = sorted(files)[:n]
    renice = renice or {}
    result = Result(n, calc, ingest)
    env = {
        "C8_INGEST_NAUTILUS_LOG_LEVEL": "ERROR",
        "C8_INGEST_PROGRESS": "never",
        "C8_INGEST_PRECISIONS": ",".join(f"{s}=1:3" for s in symbols),
        **extra_env,
    }
    partitions = int(env.get("C8_CANDIDATE_PARTITIONS", ServiceSettings().candidate_partitions))
    fleet = Fleet(
        FleetConfig(calc_workers=calc, replay_files=tuple(files[s] for s in symbols), extra_env=env)
    )
    try:
        fleet.redis.start()
        client = redis.Redis.from_url(fleet.redis.url)
        fleet.start_service("coordinator")
        fleet.start_service("publisher")
        fleet.start_service("mcp", {"C8_MCP_PORT": str(fleet.mcp_port)})
        for _ in range(calc):
            fleet.start_calc()
        groups = [symbols[i::ingest] for i in range(ingest)]
        for i, group in enumerate(groups, start=1):
            fleet.start_service(
                "ingest",
                {
                    "C8_INGEST_MODE": "replay",
                    "C8_INGEST_SPEED": "1",
                    "C8_INGEST_REPLAY_FILES": ",".join(str(files[s]) for s in group),
                    "C8_NODE_ID": f"ingest-{i}-{os.getpid()}",
                },
                instance=f"ingest-{i}",
            )
        for svc in fleet.services:
            base = re.sub(r"-\d+$", "", svc.name)
            if base in renice and svc.proc is not None:
                os.setpriority(os.PRIO_PROCESS, svc.proc.pid, renice[base])
        started = time.monotonic()
        report_keys = [keys.report(s) for s in symbols]
        while True:
            pipe = client.pipeline(transaction=False)
            for key in report_keys:
                pipe.exists(key)
            have = sum(pipe.execute())
            dead = fleet.dead_services()
            if dead:
                result.note = f"died: {[s.name for s in dead]}"
                return result
            if have == n:
                break
            if time.monotonic() - started > 120:
                result.note = f"only {have}/{n} symbols reported after 120 s"
                return result
            time.sleep(0.5)
        if verbose:
            print(f"    all {n} reporting after {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(warmup)

        sampler = Sampler(redis.Redis.from_url(fleet.redis.url), symbols)
        pids = {s.name: s.proc.pid for s in fleet.services if s.proc is not None}
        assert fleet.redis.proc is not None
        pids["redis"] = fleet.redis.proc.pid
        coord_port = fleet.service("coordinator").metrics_port

        def snapshot() -> tuple[dict[str, float], tuple[int, int], float, int, float, float]:
            info = client.info("stats")
            return (
                {name: cpu_seconds(pid) for name, pid in pids.items()},
                machine_ticks(),
                time.process_time(),
                int(info["total_commands_processed"]),
                scrape(coord_port, "context8_coordinator_symbols_moved_total"),
                scrape(coord_port, "context8_coordinator_nodes_pruned_total"),
            )

        result.pending_start = pending(client, partitions)
        t0_ms = server_ms(client)
        s0 = snapshot()
        w0 = time.monotonic()
        sampler.start()
        time.sleep(window)
        sampler.stop.set()
        sampler.join()
        if verbose and sampler.timeline:
            # One line per second: the worst lag and how many symbols were over the limit.
            t0 = sampler.timeline[0][0]
            per_s: dict[int, tuple[float, int]] = {}
            for t, worst, late in sampler.timeline:
                w, n_late = per_s.get(int(t - t0), (0.0, 0))
                per_s[int(t - t0)] = (max(w, worst), max(n_late, late))
            print("    s: worst lag ms / symbols late  " + "  ".join(
                f"{sec}:{w:.0f}/{k}" for sec, (w, k) in sorted(per_s.items())
            ), flush=True)
        s1 = snapshot()
        w1 = time.monotonic()
        t1_ms = server_ms(client)
        result.pending_end = pending(client, partitions)
        elapsed = w1 - w0
        dead = fleet.dead_services()
        if dead:
            result.note = f"died: {[s.name for s in dead]}"

        by_service: dict[str, float] = {}
        for name in pids:
            base = re.sub(r"-\d+$", "", name)
            by_service[base] = by_service.get(base, 0.0) + (s1[0][name] - s0[0][name])
        result.cpu = {k: 100 * v / elapsed for k, v in by_service.items()}
        rss: dict[str, float] = {}
        for name, pid in pids.items():
            rss[name] = rss_mb(pid)
        result.rss = rss
        busy = s1[1][0] - s0[1][0]
        total = s1[1][1] - s0[1][1]
        result.machine_busy = 100 * busy / total if total else math.nan
        result.bench_cpu = 100 * (s1[2] - s0[2]) / elapsed
        # The bench's own commands: the sampler's HMGETs, INFO, TIME, XPENDING.
        own = sampler.commands + 1 + 1
        result.ops = (s1[3] - s0[3] - own) / elapsed
        result.moved = s1[4] - s0[4]
        result.pruned = s1[5] - s0[5]
        result.token_changes = sum(max(0, len(t) - 1) for t in sampler.tokens.values())

        result.lag_p50 = percentile(sampler.lags, 50)
        result.lag_p99 = percentile(sampler.lags, 99)
        result.lag_max = max(sampler.lags, default=math.nan)
        result.age_p50 = percentile(sampler.ages, 50)
        result.age_p99 = percentile(sampler.ages, 99)
        first = [d for t, d in sampler.e2e if t - w0 <= 5]
        last = [d for t, d in sampler.e2e if w1 - t <= 5]
        result.e2e_start = statistics.median(first) if first else math.nan
        result.e2e_end = statistics.median(last) if last else math.nan

        pipe = client.pipeline(transaction=False)
        for s in symbols:
            pipe.xrange(keys.audit(s), min=f"{t0_ms}-0", max=f"{t1_ms}-0")
        rates = [len(entries) / ((t1_ms - t0_ms) / 1000) for entries in pipe.execute()]
        result.reports_mean = statistics.fmean(rates)
        result.reports_min = min(rates)
        result.stages = stage_delays(client, symbols[:: max(1, n // 8)], partitions, t0_ms, t1_ms)
        client.close()
        sampler.client.close()
        return result
    finally:
        fleet.stop()
        fleet.cleanup()


# --- output -----------------------------------------------------------------------------

SERVICES = ("ingest", "calc", "publisher", "redis", "coordinator", "mcp")


def header() -> str:
    return (
        f"{'calc':>4} {'ing':>3} {'N':>4} {'fresh':>5} | {'lag p50':>7} {'p99':>6} {'max':>6} | "
        f"{'age p50':>7} {'p99':>5} | {'rep/s':>5} {'min':>5} | "
        + " ".join(f"{s[:5]:>6}" for s in SERVICES)
        + f" | {'busy%':>5} {'ops/s':>7} | {'moved':>5} {'drop':>4} {'tok':>4} | "
        f"{'e2e grow':>8} {'pend':>9}"
    )


def row(r: Result) -> str:
    def f(x: float, w: int, d: int = 0) -> str:
        return (
            f"{'-':>{w}}"
            if x is None or (isinstance(x, float) and math.isnan(x))
            else (f"{x:>{w}.{d}f}")
        )

    cpu = " ".join(f(r.cpu.get(s, math.nan), 6) for s in SERVICES)
    text = (
        f"{r.calc:>4} {r.ingest:>3} {r.symbols:>4} {'yes' if r.fresh else 'NO':>5} | "
        f"{f(r.lag_p50, 7)} {f(r.lag_p99, 6)} {f(r.lag_max, 6)} | "
        f"{f(r.age_p50, 7)} {f(r.age_p99, 5)} | "
        f"{f(r.reports_mean, 5, 2)} {f(r.reports_min, 5, 2)} | "
        f"{cpu} | {f(r.machine_busy, 5)} {f(r.ops, 7)} | "
        f"{f(r.moved, 5)} {f(r.pruned, 4)} {r.token_changes:>4} | "
        f"{f(r.growth, 8)} {r.pending_start:>4}>{r.pending_end:<4}"
    )
    return text + (f"  ({r.note})" if r.note else "")


def per_symbol(r: Result) -> str:
    parts = [f"{s} {r.cpu.get(s, math.nan) / r.symbols:.2f}" for s in SERVICES[:4]]
    rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.rss.items()))
    stages = ", ".join(f"{k} {p50:.0f}/{p99:.0f}" for k, (p50, p99) in r.stages.items())
    return (
        f"      CPU % of a core per symbol: {', '.join(parts)}; bench {r.bench_cpu:.0f} %\n"
        f"      delay p50/p99 ms by stage: {stages}; RSS MB: {rss}"
    )


# --- driver -----------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--symbols", default="20,40,80,120", help="symbol counts (comma-separated)")
    ap.add_argument("--calc-workers", default="2", help="calc worker counts, e.g. 1,2")
    ap.add_argument("--ingest", default="1", help="ingest process counts, e.g. 1,2")
    ap.add_argument("--window", type=float, default=40.0, help="measured window, s")
    ap.add_argument("--warmup", type=float, default=20.0, help="settling after all report, s")
    ap.add_argument("--data-seconds", type=float, default=240.0, help="recording slice, s")
    ap.add_argument("--find", action="store_true", help="bisect the largest fresh N")
    ap.add_argument("--resolution", type=int, default=10, help="--find stops at this step")
    ap.add_argument("--max-symbols", type=int, default=240, help="--find goes no higher")
    ap.add_argument("--repeat", type=int, default=1, help="runs per point")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for services")
    ap.add_argument(
        "--renice", action="append", default=[], help="SERVICE=N: nice a service (experiments)"
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    counts = sorted(set(ints(args.symbols)))
    if args.window + args.warmup + 60 > args.data_seconds:
        ap.error("--data-seconds must leave ~60 s for start-up beyond --warmup + --window")
    extra_env = dict(item.split("=", 1) for item in args.env)
    renice = {k: int(v) for k, v in (item.split("=", 1) for item in args.renice)}
    tmp = Path(tempfile.mkdtemp(prefix="context8-capacity-"))
    try:
        t = time.monotonic()
        text = source_text(args.data_seconds)
        files: dict[str, Path] = {}
        # Names are zero-padded to the count's width: write them all at the widest.
        write_copies(tmp, text, max(*counts, args.max_symbols if args.find else 0), files)
        print(
            f"{len(files)} copies of {args.data_seconds:.0f} s of USD-M BTCUSDT in "
            f"{time.monotonic() - t:.1f} s; window {args.window:.0f} s after {args.warmup:.0f} s; "
            f"fresh = p99 lag <= {MAX_P99_LAG_MS} ms, >= {MIN_REPORTS_PER_S} reports/s/symbol, "
            f"e2e growth <= {MAX_BACKLOG_GROWTH_MS} ms",
            flush=True,
        )
        floor = ideal_lag(next(iter(files.values())))
        print(
            f"lag floor of the recording (an instant fleet): p50 {floor[0]:.0f} ms, "
            f"p99 {floor[1]:.0f} ms",
            flush=True,
        )
        print(header(), flush=True)

        def fresh(n: int, calc: int, ingest: int) -> bool:
            ok = True
            for _ in range(args.repeat):
                r = run_once(
                    files,
                    n,
                    calc,
                    ingest,
                    args.warmup,
                    args.window,
                    extra_env,
                    args.verbose,
                    renice,
                )
                print(row(r), flush=True)
                print(per_symbol(r), flush=True)
                ok = ok and r.fresh
            return ok

        for calc in ints(args.calc_workers):
            for ingest in ints(args.ingest):
                verdict = {n: fresh(n, calc, ingest) for n in counts}
                while args.find:
                    good = max((k for k, v in verdict.items() if v), default=0)
                    bad = min((k for k, v in verdict.items() if not v and k > good), default=0)
                    if bad:
                        if bad - good <= args.resolution:
                            break
                        n = (good + bad) // 2
                    elif good >= args.max_symbols:
                        break
                    else:
                        n = min(good * 2, args.max_symbols)
                    verdict[n] = fresh(n, calc, ingest)
                best = max((k for k, v in verdict.items() if v), default=0)
                print(f"  => calc {calc}, ingest {ingest}: largest fresh N measured = {best}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
