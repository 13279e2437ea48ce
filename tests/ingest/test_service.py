"""The service end to end: ``python -m services.ingest`` replaying into a real Redis."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import redis
from ingest_support import (
    DATA,
    replay_once,
    start_ingest,
    stream_entries,
    wait_for,
)

from context8.redis_server import free_port
from shared import keys
from shared.wire import SnapPayload, StatusPayload, TradePayload
from tests.support.streams import check_stream_consistency

BTC = [
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz",
    DATA / "binance-usdm/BTCUSDT/btcusdt_20240719.gz",
]
ETH = [
    DATA / "binance-usdm/ETHUSDT/ethusdt_20240718.gz",
    DATA / "binance-usdm/ETHUSDT/ethusdt_20240719.gz",
]


def _files(paths: list[Path]) -> str:
    return ",".join(str(p) for p in paths)


def test_demo_replay_at_max_speed_writes_a_consistent_stream(
    redis_url: str, tmp_path: Path
) -> None:
    proc = replay_once(redis_url, tmp_path / "ingest.log", BTC)
    assert proc.wait(timeout=90) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
    client = redis.Redis.from_url(redis_url)
    for symbol, depth_events, trades in (("BTCUSDT", 9022, 10701),):
        entries = stream_entries(client, symbol)
        book = [e for _, e in entries if e.kind in ("snap", "delta")]
        assert isinstance(book[0].payload, SnapPayload) and book[0].payload.src == "venue"
        counts = check_stream_consistency(entries).counts
        # Every depth event is either published or was covered by the snapshot (<= 23).
        assert depth_events - 23 <= counts["delta"] < depth_events
        assert counts["trade"] == trades
        # 8 minutes of event time, a checkpoint every 30 s.
        assert 14 <= counts["snap:checkpoint"] <= 16
        assert counts.get("status") == 1
        last = entries[-1][1].payload
        assert isinstance(last, StatusPayload)
        assert (last.state, last.reason) == ("down", "end of recording")
        # The checkpoint pointer names the newest snap.
        pointer = client.get(keys.checkpoint(symbol))
        snaps = [eid for eid, e in entries if e.kind == "snap"]
        assert pointer == snaps[-1]
        (ckpt,) = [e for eid, e in entries if eid == pointer]
        assert isinstance(ckpt.payload, SnapPayload) and ckpt.payload.src == "checkpoint"
        # Trades: exact ms exchange time, receive time from the recording, aggressor side.
        trade = next(e for _, e in entries if e.kind == "trade")
        assert isinstance(trade.payload, TradePayload)
        assert trade.event_ns % 1_000_000 == 0 and trade.recv_ns % 1_000_000 != 0
        assert trade.payload.side in ("B", "S") and trade.payload.liq is False
        registered = json.loads(client.hget(keys.SYMBOLS, symbol))
        assert registered["venue"] == "BINANCE" and registered["market"] == "usdm"
    client.close()
    # stderr is no terminal here: no progress line, every log line is JSON.
    log_lines = (tmp_path / "ingest.log").read_text().splitlines()
    assert log_lines and all(json.loads(line)["service"] == "ingest" for line in log_lines)


def _cut(src_path: Path, tmp_path: Path, lines: int) -> Path:
    """The first lines of a demo file, at the same kit path under ``tmp_path``."""
    with gzip.open(src_path, "rb") as src:
        head = src.read().splitlines()[:lines]
    path = tmp_path / src_path.parent.parent.name / src_path.parent.name / src_path.name
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"\n".join(head) + b"\n"))
    return path


def _cut_with_garbage(tmp_path: Path) -> Path:
    """The first 3,000 lines of the demo BTCUSDT file with broken lines mixed in."""
    with gzip.open(BTC[0], "rb") as src:
        lines = src.read().splitlines()[:3000]
    ts = lines[100].split(b" ", 1)[0]
    bad = [
        ts + b' {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":17213',  # truncated
        ts + b' {"stream":"btcusdt@trade","data":{"e":"trade","E":"x","s":"BTCUSDT"}}',  # types
        ts + b' {"stream":"btcusdt@kline_1m","data":{}}',  # unknown stream
        b'{"stream":"btcusdt@trade"}',  # no timestamp
    ]
    for i, line in enumerate(bad):
        lines.insert(500 + 700 * i, line)
    path = tmp_path / "binance-usdm" / "BTCUSDT" / "btcusdt_20240718.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_malformed_lines_are_counted_and_sigterm_exits_zero(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = start_ingest(
        redis_url,
        tmp_path / "ingest.log",
        # A second symbol merged in exchange-time order beside the damaged one.
        ingest_replay_files=f"{_cut_with_garbage(tmp_path)},{_cut(ETH[0], tmp_path, 3000)}",
        ingest_speed="max",
        metrics_port=str(port),
        ingest_progress="always",
        ingest_stream_stats_interval_s="0.2",
    )
    client = redis.Redis.from_url(redis_url)
    try:

        def ended() -> bool:
            for symbol in ("BTCUSDT", "ETHUSDT"):
                last = client.xrevrange(keys.stream(symbol), count=1)
                if not last or last[0][1][b"k"] != b"status":
                    return False
            return True

        wait_for(ended, timeout=60)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = metrics.decode()
        rejected = "context8_ingest_parse_rejections_total"
        assert _metric(text, rejected, symbol="BTCUSDT", reason="malformed") == 2
        assert _metric(text, rejected, symbol="BTCUSDT", reason="unknown_stream") == 1
        assert _metric(text, rejected, symbol="BTCUSDT", reason="framing") == 1
        assert _metric(text, "context8_ingest_gaps_total", symbol="BTCUSDT") == 0
        assert _metric(text, "context8_ingest_level_changes_total", symbol="BTCUSDT") > 10_000
        assert _metric(text, "context8_ingest_stream_entries_written_total", kind="delta") > 300
        lag_count = "context8_ingest_lag_seconds_count"
        assert _metric(text, lag_count, symbol="BTCUSDT") > 1000
        assert _metric(text, lag_count, symbol="ETHUSDT") > 1000
        assert _metric(text, "context8_ingest_replay_progress_ratio") == 1.0
        # Kit README: the 2024-07 recorder's clock is ~1.52 s behind the exchange.
        skew = _metric(text, "context8_ingest_clock_skew_seconds", symbol="BTCUSDT")
        assert -1.8 < skew < -1.3, skew

        def xlen_exported() -> bool:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            exported = _metric(body.decode(), "context8_ingest_stream_length", symbol="ETHUSDT")
            return exported == client.xlen(keys.stream("ETHUSDT")) > 0

        wait_for(xlen_exported, timeout=10)
        # Forced progress line (stderr is no terminal here), ending at 100 %.
        log_text = (tmp_path / "ingest.log").read_bytes().decode()  # keep the \r
        assert "\rreplay [" in log_text.replace("\x1b[K", "")
        assert "100.0%" in log_text and "2024-07-18" in log_text
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > 0, timeout=10)
        for symbol in ("BTCUSDT", "ETHUSDT"):
            counts = check_stream_consistency(stream_entries(client, symbol)).counts
            assert counts["snap:venue"] == 1 and counts["delta"] > 300
            assert counts["status"] == 1
            # The Actor's per-message counts reached Prometheus (flushed at the end).
            messages = "context8_ingest_messages_total"
            assert _metric(text, messages, symbol=symbol, kind="trade") == counts["trade"]
            assert _metric(text, messages, symbol=symbol, kind="snapshot") == 1
            assert _metric(text, messages, symbol=symbol, kind="diff") >= counts["delta"]
            assert _metric(text, messages, symbol=symbol, kind="book_ticker") > 100
        # Still running idle after the recording: it stops on SIGTERM, exit code 0.
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


def test_sigterm_mid_replay_flushes_and_exits_zero(redis_url: str, tmp_path: Path) -> None:
    proc = start_ingest(
        redis_url, tmp_path / "ingest.log", ingest_replay_files=_files(ETH), ingest_speed="4"
    )
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: client.xlen(keys.stream("ETHUSDT")) > 50, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        entries = stream_entries(client, "ETHUSDT")
        counts = check_stream_consistency(entries).counts
        assert counts["snap:venue"] == 1 and "status" not in counts
        log = (tmp_path / "ingest.log").read_text()
        assert '"ingest_stopped"' in log
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()


def test_unusable_file_path_is_a_clear_startup_error(redis_url: str, tmp_path: Path) -> None:
    proc = start_ingest(
        redis_url, tmp_path / "ingest.log", ingest_replay_files=str(tmp_path / "x.gz")
    )
    assert proc.wait(timeout=30) == 2
    assert "recorded file not found" in (tmp_path / "ingest.log").read_text()
    assert isinstance(proc, subprocess.Popen)


def test_unknown_live_symbol_is_a_clear_startup_error(redis_url: str, tmp_path: Path) -> None:
    """Live mode: a symbol ingest cannot map to the venue stops start-up (exit 2), naming
    it and the symbols ingest knows on that venue market; nothing is connected."""
    log = tmp_path / "ingest.log"
    proc = start_ingest(
        redis_url,
        log,
        ingest_mode="live",
        ingest_live_symbols="binance-usdm:BTCUSDT,binance-usdm:DOGEUSDT",
    )
    assert proc.wait(timeout=30) == 2
    (line,) = [json.loads(x) for x in log.read_text().splitlines() if "ingest_config_error" in x]
    assert line["level"] == "error"
    error = line["error"]
    assert "unknown live symbol DOGEUSDT on binance-usdm" in error
    assert "BTCUSDT, ETHUSDT, SOLUSDT, XRPUSDT" in error  # what is known there
    assert "C8_INGEST_PRECISIONS=DOGEUSDT=PP:SP" in error
    client = redis.Redis.from_url(redis_url)
    assert client.exists(keys.SYMBOLS) == 0  # failed before touching anything
    client.close()


def test_two_processes_owning_one_feed_each_write_what_one_process_would(
    redis_url: str, tmp_path: Path
) -> None:
    """Ingest scales out by feed: each process's stream equals the single-process output."""
    from services.ingest.offline import offline_entries

    files = {"BTCUSDT": _cut(BTC[0], tmp_path, 4000), "ETHUSDT": _cut(ETH[0], tmp_path, 4000)}
    procs = [
        replay_once(redis_url, tmp_path / f"ingest-{symbol}.log", [path])
        for symbol, path in files.items()
    ]
    for proc, symbol in zip(procs, files, strict=True):
        log = (tmp_path / f"ingest-{symbol}.log").read_text
        assert proc.wait(timeout=90) == 0, log()[-3000:]
    client = redis.Redis.from_url(redis_url)
    expected = offline_entries(list(files.values()))
    assert sorted(k.decode() for k in client.hkeys(keys.SYMBOLS)) == sorted(files)
    for symbol in files:
        got = [e for _, e in stream_entries(client, symbol)]
        check_stream_consistency(stream_entries(client, symbol))
        assert len(got) > 1000
        assert got == expected[symbol]
    client.close()
