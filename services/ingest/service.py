"""Ingest's body in the service shell: feeds from settings, Redis, the Nautilus node."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from services.ingest.claims import ClaimKeeper
from services.ingest.core import WrittenTail
from services.ingest.feeds import (
    Feed,
    live_feeds,
    parse_precisions,
    parse_symbol_map,
    replay_feeds,
)
from services.ingest.settings import Settings
from services.ingest.stall import check_stall_symbols
from services.ingest.writer import StreamWriter
from shared import keys, wire
from shared.lifecycle import Shutdown, sleep_unless
from shared.redis_client import RedisClient
from shared.shell import Shell

SERVICE = "ingest"


def resolve_feeds(settings: Settings) -> list[Feed]:
    """The feeds to run, or ``ConfigError`` with a message saying what to fix."""
    precisions = parse_precisions(settings.ingest_precisions)
    symbol_map = parse_symbol_map(settings.ingest_symbol_map)
    stall_overrides = settings.stall_overrides()
    if settings.ingest_mode == "replay":
        feeds = replay_feeds(settings.replay_paths(), precisions, symbol_map)
    else:
        from services.ingest.venues import parse_venue_urls

        feeds = live_feeds(settings.ingest_live_symbols, precisions, symbol_map)
        parse_venue_urls(settings.ingest_venue_urls)  # a bad URL fails here
    check_stall_symbols(stall_overrides, [f.symbol for f in feeds])
    return feeds


async def sample_stream_lengths(
    redis: RedisClient, feeds: list[Feed], interval_s: float, stop: asyncio.Event, log: Any
) -> None:
    """``XLEN`` of every symbol stream every ``interval_s`` (one pipelined round trip)."""
    from services.ingest import metrics

    gauges = [(keys.stream(f.symbol), metrics.STREAM_LENGTH.labels(f.symbol)) for f in feeds]
    while not stop.is_set():
        try:
            pipe = redis.pipeline(transaction=False)
            for stream, _ in gauges:
                pipe.xlen(stream)
            for (_, gauge), length in zip(gauges, await pipe.execute(), strict=True):
                gauge.set(length)
        except (RedisError, OSError) as exc:
            log.warning("stream length sample failed", error=repr(exc))
        await sleep_unless(stop, interval_s)


async def register_symbols(redis: RedisClient, feeds: list[Feed], mode: str) -> None:
    mapping = {
        feed.symbol: json.dumps({**feed.registration(), "mode": mode}, separators=(",", ":"))
        for feed in feeds
    }
    await redis.hset(keys.SYMBOLS, mapping=mapping)  # type: ignore[arg-type]


async def main(shell: Shell[Settings]) -> None:
    """Ingest's body in the service shell (``shared/shell.py``)."""
    settings, log = shell.settings, shell.log
    feeds = resolve_feeds(settings)  # ConfigError: the shell exits 2 with the message
    log.info(
        "feeds",
        mode=settings.ingest_mode,
        speed=settings.ingest_speed,
        symbols={f.symbol: [str(p) for p in f.files] for f in feeds},
    )
    redis = shell.redis()
    if not await shell.wait_for_redis(redis):
        return
    await register_symbols(redis, feeds, settings.ingest_mode)
    await run_node(settings, feeds, redis, shell.shutdown, log)


async def run_node(
    settings: Settings,
    feeds: list[Feed],
    redis: RedisClient,
    shutdown: Shutdown,
    log: Any,
) -> None:
    """Run the Nautilus node until SIGTERM (or the recording's end with exit-at-end).

    Every feed runs (a hot standby for the symbols another process holds); only the
    symbols whose claim this process holds are written (``claims.py``).
    """
    # Nautilus is imported only now: a configuration error above fails fast.
    from services.ingest import metrics
    from services.ingest.node import build_replay_node
    from services.ingest.replay_client import ReplayHooks
    from services.ingest.side_channel import SideChannel

    holder: dict[str, Any] = {}

    takeovers: set[asyncio.Task[None]] = set()

    def acquired(symbol: str, previous: str) -> None:
        metrics.FEED_OWNED.labels(symbol).set(1)
        actor = holder.get("actor")
        if actor is None:  # before the node starts: the feed starts from scratch anyway
            writer.own(symbol)
            log.info("feed claimed", symbol=symbol)
            return
        metrics.TAKEOVERS.labels(symbol).inc()
        reason = f"ingest takeover by {settings.node_id}" + (
            f" from {previous}" if previous else ""
        )
        takeovers.add(asyncio.create_task(take_over(actor, symbol, reason, previous)))

    async def take_over(actor: Any, symbol: str, reason: str, previous: str) -> None:
        """Write the symbol from now: first learn what the previous writer wrote last."""
        try:
            written = await written_tail(redis, symbol)
        except (RedisError, OSError) as exc:
            log.warning("stream tail unreadable; no trade backfill", symbol=symbol, error=repr(exc))
            written = None
        if symbol not in keeper.held:
            return  # lost again meanwhile
        writer.own(symbol)
        log.warning("feed taken over", symbol=symbol, previous=previous or None)
        actor.takeover(symbol, reason, written)

    def lost(symbol: str, why: str) -> None:
        writer.disown(symbol)
        metrics.FEED_OWNED.labels(symbol).set(0)
        metrics.CLAIMS_LOST.labels(symbol).inc()

    writer = StreamWriter(
        redis,
        maxlen=settings.ingest_stream_maxlen,
        owner=settings.node_id,
        batch_size=settings.ingest_batch_size,
        flush_interval_s=settings.ingest_flush_interval_ms / 1000,
        log=log,
        on_lost=lambda symbol, why: keeper.lose(symbol, why),
    )
    keeper = ClaimKeeper(
        redis,
        settings.node_id,
        [f.symbol for f in feeds],
        settings.ingest_claim_ttl_s,
        log,
        on_acquired=acquired,
        on_lost=lost,
    )
    for feed in feeds:
        metrics.FEED_OWNED.labels(feed.symbol).set(0)
    await _first_claims(keeper, shutdown, log)
    writer_task = asyncio.create_task(writer.run(), name="ingest-writer")
    sampler_stop = asyncio.Event()
    sampler = asyncio.create_task(
        sample_stream_lengths(
            redis, feeds, settings.ingest_stream_stats_interval_s, sampler_stop, log
        ),
        name="ingest-xlen",
    )
    side = SideChannel()
    ended = asyncio.Event()

    def on_end(reason: str) -> None:
        actor = holder["actor"]
        for feed in feeds:
            actor.end_of_feed(feed.instrument_id, reason)
        log.info(reason, symbols=[f.symbol for f in feeds])
        ended.set()

    if settings.ingest_mode == "replay":
        hooks = ReplayHooks(
            on_end=on_end,
            wait_for_room=writer.wait_for_room,
            log=log,
            on_progress=progress_display(settings.ingest_progress),
        )
        node, actor = build_replay_node(settings, feeds, side, writer, hooks, log)
    else:
        from services.ingest.node import build_live_node

        node, actor = build_live_node(settings, feeds, side, writer, log)
    holder["actor"] = actor
    # Nautilus installs its own SIGTERM/SIGINT handlers on the loop; take them back so
    # a signal reaches the service's drain path below.
    shutdown.install()
    # Start-up objects (Nautilus, instruments) never die: keep the collector off them, and
    # collect the young generation less often (ingest allocates many short-lived
    # tuples per message; reference counting frees them, cycles are rare).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    node_task = await start_node(node)
    claims_stop = asyncio.Event()
    claims_task = asyncio.create_task(keeper.run(claims_stop), name="ingest-claims")
    try:
        await _wait_until_done(settings, shutdown, ended, node_task, writer, log)
    finally:
        log.info("stopping", pending_entries=writer.pending)
        # No takeover while stopping; the claims held stay until the last entry is out
        # (should the flush outlast them, the append script refuses what is left).
        claims_stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(claims_task, 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.stop_async(), 3.0)
        node_task.cancel()
        with contextlib.suppress(BaseException):
            await node_task
        left = await writer.close(timeout=2.0)
        if left:
            log.warning("entries left unwritten at shutdown", count=left)
        writer_task.cancel()
        with contextlib.suppress(BaseException):
            await writer_task
        # Only now give the claims back: a standby takes over after the last entry.
        await keeper.release()
        sampler_stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(sampler, 1.0)


#: How far back a takeover reads what the previous writer wrote (Redis server time):
#: a little more than the trades a standby keeps (``core.RECENT_TRADES_NS``).
TAIL_S = 70


async def written_tail(redis: RedisClient, symbol: str) -> WrittenTail:
    """The trade ids (and the oldest event time) of the entries appended to the
    symbol's stream in the last ``TAIL_S`` seconds."""
    seconds, micros = await redis.time()
    since_ms = seconds * 1000 + micros // 1000 - TAIL_S * 1000
    ids: set[str] = set()
    oldest: int | None = None
    tail: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrevrange(  # type: ignore[assignment]
        keys.stream(symbol), min=f"{since_ms}-0"
    )
    for _, fields in tail:
        entry = wire.decode(fields)
        oldest = entry.event_ns if oldest is None else min(oldest, entry.event_ns)
        if isinstance(entry.payload, wire.TradePayload):
            ids.add(entry.payload.id)
    return WrittenTail(frozenset(ids), oldest)


async def _first_claims(keeper: ClaimKeeper, shutdown: Shutdown, log: Any) -> None:
    """Claim what is free before the feeds start, so they start as writers."""
    while not shutdown.requested:
        try:
            await keeper.step()
        except (RedisError, OSError) as exc:
            log.warning("feed claims not reachable; retrying", error=repr(exc))
            await shutdown.wait(keeper.tick_s)
            continue
        standby = sorted(set(keeper.symbols) - keeper.held)
        if standby:
            log.info("standby for symbols another process writes", symbols=standby)
        return


def progress_display(mode: str) -> Callable[[float, int, int, bool], None] | None:
    """The replay progress line on stderr, or None when stderr is no terminal."""
    from services.ingest.progress import ProgressLine, progress_enabled

    if not progress_enabled(mode, sys.stderr):
        return None
    return ProgressLine(sys.stderr).update


async def start_node(node: Any) -> asyncio.Future[Any]:
    """Start the node's kernel; the future ends if its data engine's queues stop.

    (``TradingNode.run_async`` does the same but logs an empty ERROR when the queues
    are cancelled at every normal stop.)
    """
    await node.kernel.start_async()
    engine = node.kernel.data_engine
    return asyncio.gather(
        engine.get_cmd_queue_task(),
        engine.get_req_queue_task(),
        engine.get_res_queue_task(),
        engine.get_data_queue_task(),
    )


async def _wait_until_done(
    settings: Settings,
    shutdown: Shutdown,
    ended: asyncio.Event,
    node_task: asyncio.Future[Any],
    writer: StreamWriter,
    log: Any,
) -> None:
    stop = asyncio.create_task(shutdown.event.wait())
    end = asyncio.create_task(ended.wait())
    try:
        waiting = {stop, node_task}
        if settings.ingest_exit_at_end:
            waiting.add(end)
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if end in done:
            await writer.wait_idle()
            log.info("exiting at end of recording (C8_INGEST_EXIT_AT_END=true)")
        elif node_task in done and not shutdown.requested:
            log.error("nautilus node stopped unexpectedly")
    finally:
        stop.cancel()
        end.cancel()
