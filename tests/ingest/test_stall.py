"""Stalls: a book feed silent beyond its expected maximum (pure parts and replay).

The replay tests inject a silence into a real recording: from one line on, every
exchange time (and the recorder's local timestamp) is shifted forward by more than the
limit while the venue's update ids stay as they were, so the sequence chain is intact.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import redis
from ingest_support import DATA, replay_once, stream_entries

from services.ingest.offline import IngestOptions, offline_entries, offline_feeds
from services.ingest.records import BookUpdate, Status
from services.ingest.sequencer import BookSequencer, Rule
from services.ingest.service import resolve_feeds
from services.ingest.settings import Settings
from services.ingest.stall import (
    StallWatch,
    check_stall_symbols,
    parse_stall_overrides,
    stall_limit_ns,
)
from shared.errors import ConfigError
from shared.wire import DeltaPayload, Entry, StatusPayload
from tests.support.streams import check_stream_consistency

BTC = DATA / "binance-usdm/BTCUSDT/btcusdt_20240718.gz"
LINES = 4000  # ~65 s of exchange time, the venue snapshot on line 14
SILENCE_AT = 2000  # the line (0-based) from which times are shifted
SHIFT_S = 20  # the injected silence
LIMIT = "BTCUSDT=5"

# -- configuration ------------------------------------------------------------------------


def test_stall_overrides_syntax() -> None:
    assert parse_stall_overrides("") == {}
    assert parse_stall_overrides(" btcusdt=5, XRPUSDT=30 ,SOLUSDT=off,ETHUSDT=0.25") == {
        "BTCUSDT": 5.0,
        "XRPUSDT": 30.0,
        "SOLUSDT": 0.0,
        "ETHUSDT": 0.25,
    }
    for bad in ("BTCUSDT", "BTCUSDT=", "=5", "BTCUSDT=soon", "BTCUSDT=-1", "BTCUSDT=inf"):
        with pytest.raises(ConfigError, match="C8_INGEST_STALL_AFTER"):
            parse_stall_overrides(bad)
    assert stall_limit_ns("BTCUSDT", 10.0, {"BTCUSDT": 5.0}) == 5_000_000_000
    assert stall_limit_ns("ETHUSDT", 10.0, {"BTCUSDT": 5.0}) == 10_000_000_000
    assert stall_limit_ns("SOLUSDT", 10.0, {"SOLUSDT": 0.0}) is None
    assert stall_limit_ns("SOLUSDT", 0.0, {}) is None


def test_stall_override_for_a_symbol_not_published_is_a_startup_error() -> None:
    check_stall_symbols({"BTCUSDT": 5.0}, ["BTCUSDT", "ETHUSDT"])
    settings = Settings(ingest_replay_files=str(BTC), ingest_stall_after="DOGEUSDT=5")
    with pytest.raises(ConfigError, match=r"DOGEUSDT.*published symbols: BTCUSDT"):
        resolve_feeds(settings)
    live = Settings(
        ingest_mode="live",
        ingest_live_symbols="binance-usdm:BTCUSDT",
        ingest_stall_after="BTCUSDT=5,ETHUSDT=off",
    )
    with pytest.raises(ConfigError, match="names ETHUSDT"):
        resolve_feeds(live)


def test_stall_watch_opens_once_and_closes_on_the_next_book_message() -> None:
    watch = StallWatch(limit_ns=100)
    assert watch.open_if_due(10_000) is None  # no book message yet: nothing to time
    assert watch.book(1_000) is None
    assert watch.open_if_due(1_100) is None  # exactly the limit is not a stall
    assert watch.open_if_due(1_101) == 1_100  # stamped at last book + limit
    assert watch.stalled and watch.open_if_due(5_000) is None  # one stall, not one per check
    assert watch.book(1_500) == 500  # the silence it ended
    assert not watch.stalled and watch.book(1_600) is None
    off = StallWatch(limit_ns=None)
    off.book(0)
    assert off.open_if_due(10**12) is None
    started = StallWatch(limit_ns=100)
    started.start(50)  # live: silence counts from the subscription
    assert started.open_if_due(151) == 150


def _upd(snapshot: bool, U: int, u: int, pu: int, bids: list, asks: list) -> BookUpdate:
    return BookUpdate(snapshot, U, u, pu, bids, asks, u, u)


def test_sequencer_stall_drops_the_book_and_buffers_until_a_fresh_snapshot() -> None:
    seq = BookSequencer(Rule.FUTURES)
    seq.on_update(_upd(True, 10, 10, 10, [(100, 1)], [(101, 1)]))
    seq.on_update(_upd(False, 11, 12, 10, [(99, 2)], []))
    (status,) = seq.stall("stall: test", 5, 6)
    assert isinstance(status, Status)
    assert (status.state, status.reason) == ("degraded", "stall: test")
    assert seq.phase == "degraded" and seq.top() is None
    # Diffs received while the snapshot is fetched are buffered, not lost ...
    assert seq.on_update(_upd(False, 13, 14, 12, [(98, 3)], [])) == []
    assert seq.on_update(_upd(False, 15, 16, 14, [], [(102, 4)])) == []
    # ... and the snapshot (covering the first) brings the book back with ``ok``.
    outs = seq.on_update(_upd(True, 15, 15, 15, [(100, 1), (98, 3)], [(101, 1)]))
    assert [(type(o), getattr(o, "snapshot", None)) for o in outs] == [
        (BookUpdate, True),
        (Status, None),
        (BookUpdate, False),
    ]
    assert isinstance(outs[1], Status) and outs[1].state == "ok"
    assert seq.top() == (100, 1, 101, 1) and seq.asks == {101: 1, 102: 4}
    assert seq.stats.covered == 1 and seq.last_u == 16


# -- replay: a silence injected into a real recording ---------------------------------------

_TIMES = re.compile(rb'"([ET])":(\d+)')


def _with_silence(tmp_path: Path, drop_first_diff_after: bool = False) -> Path:
    """The first ``LINES`` lines of the demo file, times shifted by ``SHIFT_S`` from
    line ``SILENCE_AT`` on (ids kept); optionally the first diff after it dropped."""
    with gzip.open(BTC, "rb") as src:
        lines = src.read().splitlines()[:LINES]
    shift_ms = SHIFT_S * 1000
    out = lines[:SILENCE_AT]
    dropped = not drop_first_diff_after
    for line in lines[SILENCE_AT:]:
        if not dropped and b"@depth" in line[:80]:
            dropped = True
            continue
        ts, body = line.split(b" ", 1)
        body = _TIMES.sub(lambda m: b'"%s":%d' % (m[1], int(m[2]) + shift_ms), body)
        out.append(b"%d %s" % (int(ts) + SHIFT_S * 10**9, body))
    path = tmp_path / "binance-usdm" / "BTCUSDT" / BTC.name
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"\n".join(out) + b"\n"))
    return path


def _statuses(entries: list[Entry]) -> list[tuple[int, str, str]]:
    return [
        (i, e.payload.state, e.payload.reason)
        for i, e in enumerate(entries)
        if isinstance(e.payload, StatusPayload)
    ]


def _deltas(entries: list[Entry]) -> list[tuple[int, int, int]]:
    return [
        (e.payload.U, e.payload.u, e.payload.pu)
        for e in entries
        if isinstance(e.payload, DeltaPayload)
    ]


def test_replay_silence_is_degraded_then_ok_on_exchange_time(tmp_path: Path) -> None:
    path = _with_silence(tmp_path)
    options = IngestOptions(stall_after=LIMIT)
    (replay,) = offline_feeds([path], options)
    entries = list(replay.entries())
    assert replay.core is not None and replay.core.counts.stalls == 1

    (degraded, ok, down) = _statuses(entries)
    assert degraded[1:] == ("degraded", "stall: no book update for 5 s (expected at most 5 s)")
    assert ok[1] == "ok" and ok[2].startswith("book updates resumed after 2")
    assert ok[2].endswith("s; sequence chain intact") and down[1] == "down"
    # Stamped at the silence's onset (the last book message before it) + the limit.
    book_times = [e.event_ns for e in entries[: degraded[0]] if e.kind in ("snap", "delta")]
    assert entries[degraded[0]].event_ns == max(book_times) + 5_000_000_000
    # ``ok`` follows the first delta after the silence, and that delta continues the chain.
    assert entries[ok[0] - 1].kind == "delta"
    first_after = entries[ok[0] - 1].event_ns
    assert first_after - max(book_times) > SHIFT_S * 10**9
    # Nothing was dropped or resynced: the same deltas as without the silence, and the
    # stream passes the consumer's contract checks.
    clean = offline_entries([_cut(tmp_path)], options)["BTCUSDT"]
    assert _deltas(entries) == _deltas(clean) and len(_deltas(clean)) > 1000
    assert [s[1] for s in _statuses(clean)] == ["down"]
    check_stream_consistency([(b"", e) for e in entries])
    # The default limit (10 s) is shorter than the silence too; switched off for the
    # symbol, there is no stall.
    default = offline_entries([path])["BTCUSDT"]
    assert [s[2][:31] for s in _statuses(default)][:1] == ["stall: no book update for 10 s "]
    quiet = offline_entries([path], IngestOptions(stall_after="BTCUSDT=off"))["BTCUSDT"]
    assert [s[1] for s in _statuses(quiet)] == ["down"]


def _cut(tmp_path: Path) -> Path:
    with gzip.open(BTC, "rb") as src:
        lines = src.read().splitlines()[:LINES]
    path = tmp_path / "clean" / "binance-usdm" / "BTCUSDT" / BTC.name
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return path


def test_replay_silence_with_a_broken_chain_resyncs_instead(tmp_path: Path) -> None:
    path = _with_silence(tmp_path, drop_first_diff_after=True)
    entries = offline_entries([path], IngestOptions(stall_after=LIMIT))["BTCUSDT"]
    # The ids show a diff was lost across the silence: no ``ok``, a gap; the recording
    # holds no later snapshot, so the symbol stays degraded until the end.
    assert [s[1] for s in _statuses(entries)] == ["degraded", "resync", "down"]


def test_replay_stall_entries_are_the_same_at_any_speed(redis_url: str, tmp_path: Path) -> None:
    """The service (speed max, then 40x) writes exactly the offline path's entries."""
    path = _with_silence(tmp_path)
    expected = offline_entries([path], IngestOptions(stall_after=LIMIT))["BTCUSDT"]
    client = redis.Redis.from_url(redis_url)
    try:
        for speed in ("max", "40"):
            client.flushall()
            log = tmp_path / f"ingest-{speed}.log"
            proc = replay_once(
                redis_url, log, [path], speed, ingest_stall_after=LIMIT, metrics_port="0"
            )
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
            written = [e for _, e in stream_entries(client, "BTCUSDT")]
            assert len(written) == len(expected), speed
            for i, (got, want) in enumerate(zip(written, expected, strict=True)):
                assert got == want, (speed, i, got.kind, want.kind)
            assert [s[1] for s in _statuses(written)] == ["degraded", "ok", "down"]
            assert '"reason": "stall: no book update for 5 s' in log.read_text()
    finally:
        client.close()
