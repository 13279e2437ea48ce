"""The imperative shell: aiohttp handlers, connections, pacing tasks, control API.

Everything that decides something -- the schedule, the true book, limits, faults,
protocol replies -- lives in the pure modules; this file moves bytes between them and
the sockets. One event loop, one port; each market under its own path prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from context8.emulator.book import BookKeeper
from context8.emulator.copies import Renamer, copy_names, pair_of
from context8.emulator.derivatives import Synthesiser, binance_open_interest_body, bybit_ticker_text
from context8.emulator.faults import Fault, FaultError, FaultState, parse_fault
from context8.emulator.limits import (
    DepthParamError,
    MarketAccounting,
    MinuteWeight,
    SlidingWindow,
    depth_limit,
    depth_weight,
)
from context8.emulator.markets import MARKETS, MarketSpec, http_base, venue_urls, ws_base
from context8.emulator.protocol import (
    Topic,
    binance_control,
    binance_depth_body,
    binance_error,
    binance_rest_error,
    bybit_book_message,
    bybit_op,
    data_part,
    initial_streams,
    parse_stream,
    rename_stream,
    stream_limit_error,
)
from context8.emulator.recording import Event, Kind, Recording
from context8.emulator.timeline import Clock, Cursor

log = logging.getLogger("context8.emulator")

START_MODES = ("on-subscribe", "now", "manual")
#: Frames queued for one connection beyond which it is dropped (a client that cannot keep up).
MAX_QUEUE = 100_000
#: Shortest pause of a symbol's pacing task: frames due within it go out together, which
#: bounds the wake-ups per symbol (many copies at high speed) at no visible cost in pacing.
MIN_TICK_S = 0.002
#: Longest a REST depth request is held waiting for the book to become known.
HOLD_TIMEOUT_S = 120.0
_KIND_NAMES = {
    Kind.DEPTH: "depth",
    Kind.TRADE: "trade",
    Kind.TICKER: "bookTicker",
    Kind.MARK: "mark",
    Kind.LIQUIDATION: "liquidation",
}
#: Synthetic derivatives frames kept per symbol for ``GET /_emulator/derivatives``.
DERIVED_LOG = 50_000


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


class Connection:
    """One client WebSocket: its subscriptions, outbound queue and message rate."""

    def __init__(
        self, market: MarketState, ws: web.WebSocketResponse, request: web.Request
    ) -> None:
        self.id = uuid.uuid4().hex[:20]
        self.market = market
        self.ws = ws
        self.transport = request.transport
        self.ip = request.remote or "?"
        self.combined = True
        self.streams: list[str] = []  # Binance, in subscription order
        self.topics: dict[str, Topic] = {}  # Bybit
        self.rate = SlidingWindow(1.0)
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []

    def send(self, text: str) -> None:
        if self.closed:
            return
        self.queue.put_nowait(text)
        if self.queue.qsize() > MAX_QUEUE:
            log.warning("connection %s cannot keep up; dropping it", self.id)
            self.market.slow_clients += 1
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (as a network failure does)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def writer(self) -> None:
        try:
            while (text := await self.queue.get()) is not None:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self.closed = True

    async def pinger(self, interval: float) -> None:
        """Binance sends a ping frame every ``interval`` seconds and expects pongs."""
        while not self.closed:
            await asyncio.sleep(interval)
            try:
                await self.ws.ping(str(int(time.time() * 1000)).encode())
            except (ConnectionError, RuntimeError):
                return
            self.market.pings_sent += 1


class MarketState:
    """One market: its symbols, connections, limit accounting and counters."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.accounting = MarketAccounting(spec.limits)
        self.symbols: dict[str, SymbolRuntime] = {}
        self.by_lower: dict[str, SymbolRuntime] = {}
        self.connections: set[Connection] = set()
        self.connections_total = 0
        self.rest_requests: Counter[str] = Counter()
        self.pings_sent = 0
        self.pongs_received = 0
        self.client_pings = 0
        self.app_pings = 0
        self.error_replies = 0
        self.unknown_streams = 0
        self.depth_mismatch = 0
        self.slow_clients = 0
        self.refused = 0

    def stats(self, now: float) -> dict[str, Any]:
        acct = self.accounting
        subs = sum(len(c.streams) + len(c.topics) for c in self.connections)
        return {
            "connections_open": len(self.connections),
            "connections_total": self.connections_total,
            "connections_refused": self.refused,
            "subscriptions": subs,
            "rest_requests": dict(self.rest_requests),
            "weight_per_minute_max": acct.max_weight_per_minute,
            "streams_per_connection_max": acct.max_streams_per_connection,
            "messages_per_second_max": acct.max_messages_per_second,
            "args_per_request_max": acct.max_args_per_request,
            "violations": dict(acct.violations),
            "pings_sent": self.pings_sent,
            "pongs_received": self.pongs_received,
            "client_pings": self.client_pings,
            "app_pings": self.app_pings,
            "error_replies": self.error_replies,
            "unknown_streams": self.unknown_streams,
            "depth_mismatch": self.depth_mismatch,
            "slow_clients_dropped": self.slow_clients,
            "limits": {
                "streams_per_connection": acct.limits.streams_per_connection,
                "messages_per_second": acct.limits.messages_per_second,
                "connections_per_5min": acct.limits.connections_per_window,
                "weight_per_minute": acct.limits.weight_per_minute,
                "args_per_request": acct.limits.args_per_request,
            },
            "symbols": {name: rt.stats(now) for name, rt in sorted(self.symbols.items())},
        }


class SymbolRuntime:
    """One served symbol: its clock, read position, true book and subscribers."""

    def __init__(
        self,
        emulator: Emulator,
        market: MarketState,
        recording: Recording,
        name: str,
        renamer: Renamer | None,
    ) -> None:
        self.emulator = emulator
        self.market = market
        self.spec = market.spec
        self.recording = recording
        self.name = name
        self.renamer = renamer
        self.keeper = BookKeeper(self.spec.venue, self.spec.is_futures)
        derivatives = self.spec.is_futures or self.spec.name == "bybit-linear"
        self.synth = Synthesiser(self.spec.venue, name, derivatives)
        self.cursor = Cursor(recording.events, self.keeper, self.synth.observe)
        #: The synthetic derivatives frames dispatched so far (JSON texts), oldest first.
        self.derived: deque[str] = deque(maxlen=DERIVED_LOG)
        self.clock = Clock(recording.events[0].t, emulator.speed)
        self.required = recording.data_kinds
        #: Binance: kind -> subscribed stream name -> connections; Bybit: TRADE topics
        self.subs: dict[Kind, dict[str, set[Connection]]] = {
            Kind.DEPTH: {},
            Kind.TRADE: {},
            Kind.TICKER: {},
            Kind.MARK: {},
            Kind.LIQUIDATION: {},
        }
        #: Bybit: orderbook depth -> connections; who has had a snapshot
        self.book_subs: dict[int, set[Connection]] = {}
        self.primed: set[tuple[Connection, int]] = set()
        self.sent: Counter[str] = Counter()
        self.dropped = 0
        self.stalled_frames = 0
        self.started = asyncio.Event()
        self._book_changed = asyncio.Event()
        self.ended = False
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ clock

    @property
    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def start_clock(self) -> bool:
        if not self.clock.start(self.loop_time):
            return False
        log.info("clock of %s/%s started", self.spec.name, self.name)
        self.started.set()
        return True

    def maybe_start(self) -> None:
        """``on-subscribe``: start once every recorded data stream has a subscriber."""
        if self.clock.started or self.emulator.start_mode != "on-subscribe":
            return
        if self.spec.is_binance:
            ready = all(any(self.subs[k].values()) for k in self.required)
        else:
            ready = any(self.book_subs.values())
        if ready:
            self.start_clock()

    def position(self) -> float | None:
        return self.clock.position(self.loop_time)

    def exchange_ms(self) -> int:
        return self.cursor.exchange_ms(self.position())

    async def pump(self) -> None:
        """Send each frame when the clock reaches it, then fall silent at the end."""
        await self.started.wait()
        while (nxt := self.cursor.next_time()) is not None:
            await asyncio.sleep(max(MIN_TICK_S, self.clock.wall_at(nxt) - self.loop_time))
            self.catch_up()
        self.ended = True
        self._notify()
        log.info("recording of %s/%s ended", self.spec.name, self.name)

    def catch_up(self) -> None:
        """Pass (apply and send) every frame the clock has reached."""
        position = self.position()
        if position is None:
            return
        before = (self.keeper.known, self.keeper.snapshots)
        for ev in self.cursor.due(position):
            self.dispatch(ev)
        if (self.keeper.known, self.keeper.snapshots) != before:
            self._notify()

    def _notify(self) -> None:
        self._book_changed.set()
        self._book_changed = asyncio.Event()

    async def wait_book(self, timeout: float) -> bool:
        """Hold until the book is known (the position reached a snapshot); False if never."""
        deadline = self.loop_time + timeout
        while True:
            self.catch_up()
            if self.keeper.known:
                return True
            if self.ended or not self.cursor.snapshot_ahead():
                return False
            left = deadline - self.loop_time
            if left <= 0:
                return False
            event = self._book_changed
            # Wake at the snapshot line's time too (the pump may be parked in a sleep).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(left, 0.05))

    # --------------------------------------------------------------- frames

    def _text(self, text: str) -> str:
        return self.renamer.text(text) if self.renamer else text

    def _stream(self, name: str) -> str:
        return self.renamer.stream(name) if self.renamer else name

    def dispatch(self, ev: Event) -> None:
        """Send one passed frame to its subscribers, unless a fault withholds it."""
        kind = ev.kind
        if kind is Kind.OTHER or (kind is Kind.SNAPSHOT and self.spec.is_binance):
            return
        if self.emulator.faults.is_stalled(self.spec.name, self.name):
            self.stalled_frames += 1
            return
        if kind is Kind.DEPTH and self.emulator.faults.take_drop(self.spec.name, self.name):
            self.dropped += 1
            return
        if kind in (Kind.MARK, Kind.LIQUIDATION):
            self.derived.append(ev.text)
        if self.spec.is_binance:
            self._dispatch_binance(ev)
        elif kind in (Kind.DEPTH, Kind.SNAPSHOT):
            self._dispatch_bybit_book(ev)
        else:
            self._dispatch_plain(ev)

    def _dispatch_binance(self, ev: Event) -> None:
        subs = self.subs[ev.kind]
        if not any(subs.values()):
            return
        text = self._text(ev.text)
        recorded = self._stream(ev.stream)
        count = 0
        for name, conns in subs.items():
            if not conns:
                continue
            combined = text if name == recorded else rename_stream(text, recorded, name)
            raw: str | None = None
            for conn in conns:
                if conn.combined:
                    conn.send(combined)
                else:
                    raw = raw if raw is not None else data_part(combined)
                    conn.send(raw)
                count += 1
        self.sent[_KIND_NAMES[ev.kind]] += count

    def _dispatch_plain(self, ev: Event) -> None:
        for conns in self.subs[ev.kind].values():
            text = self._text(ev.text)
            for conn in conns:
                conn.send(text)
            self.sent[_KIND_NAMES[ev.kind]] += len(conns)

    def bybit_send_ticker_snapshot(self, conn: Connection) -> None:
        """A new ``tickers`` subscriber first gets the newest values as a ``snapshot``
        (stamped with the time they were synthesised at), then the per-second deltas."""
        last = self.synth.last_ticker
        if last is None or self.emulator.faults.is_stalled(self.spec.name, self.name):
            return
        t_ms, values = last
        conn.send(bybit_ticker_text(self.name, t_ms, values, "snapshot"))
        self.sent["mark"] += 1

    def _dispatch_bybit_book(self, ev: Event) -> None:
        recorded_depth = self.recording.book_depth or 0
        topic_prefix = f'"topic":"orderbook.{recorded_depth}.'
        for depth, conns in self.book_subs.items():
            if not conns:
                continue
            if ev.kind is Kind.SNAPSHOT:
                text = self._bybit_snapshot_text(ev, depth)
                for conn in conns:
                    conn.send(text)
                    self.primed.add((conn, depth))
                self.sent["snapshot"] += len(conns)
                continue
            text = self._text(ev.text)
            if depth != recorded_depth:
                text = text.replace(topic_prefix, f'"topic":"orderbook.{depth}.', 1)
            for conn in conns:
                if (conn, depth) in self.primed:
                    conn.send(text)
                    self.sent["delta"] += 1

    def _bybit_snapshot_text(self, ev: Event, depth: int) -> str:
        if depth == self.recording.book_depth:
            return self._text(ev.text)
        msg = orjson.loads(ev.text)
        return bybit_book_message(
            f"orderbook.{depth}.{self.name}",
            self.name,
            ev.bids[:depth],
            ev.asks[:depth],
            update_id=ev.last_id,
            seq=ev.seq,
            ts=int(msg.get("ts", 0)),
            cts=ev.cts,
        )

    # ---------------------------------------------------------- subscriptions

    def add_stream(self, conn: Connection, name: str, kind: Kind) -> None:
        self.subs[kind].setdefault(name, set()).add(conn)
        self.maybe_start()

    def remove_conn(self, conn: Connection, name: str | None = None) -> None:
        for subs in self.subs.values():
            for stream, conns in subs.items():
                if name is None or stream == name:
                    conns.discard(conn)
        for depth, conns in self.book_subs.items():
            if name is None or name == f"orderbook.{depth}.{self.name}":
                conns.discard(conn)
                self.primed.discard((conn, depth))

    def bybit_book_subscribe(self, conn: Connection, depth: int) -> None:
        """Subscribe (or re-subscribe: a fresh snapshot follows) an orderbook topic."""
        self.book_subs.setdefault(depth, set()).add(conn)
        self.primed.discard((conn, depth))
        if self.recording.book_depth and depth != self.recording.book_depth:
            self.market.depth_mismatch += 1
        self.maybe_start()

    def bybit_send_snapshot(self, conn: Connection, depth: int) -> None:
        """The current true book as a ``snapshot`` (top ``depth``), if known."""
        if (conn, depth) in self.primed or not self.keeper.known:
            return
        if self.emulator.faults.is_stalled(self.spec.name, self.name):
            return  # sent nothing while stalled; the next recorded snapshot primes it
        bids, asks = self.keeper.book.top(depth)
        conn.send(
            bybit_book_message(
                f"orderbook.{depth}.{self.name}",
                self.name,
                bids,
                asks,
                update_id=self.keeper.last_update_id,
                seq=self.keeper.seq,
                ts=self.exchange_ms(),
                cts=self.keeper.cts,
            )
        )
        self.primed.add((conn, depth))
        self.sent["snapshot"] += 1

    def subscriber_count(self) -> int:
        conns: set[Connection] = set()
        for subs in self.subs.values():
            for group in subs.values():
                conns |= group
        for group in self.book_subs.values():
            conns |= group
        return len(conns)

    def stats(self, now: float) -> dict[str, Any]:
        position = self.clock.position(now)
        return {
            "copy_of": self.renamer.original if self.renamer else None,
            "clock": "running" if self.clock.started else "waiting",
            "exchange_time_ms": (
                self.cursor.exchange_ms(position) if position is not None else None
            ),
            "frames_passed": self.cursor.index,
            "frames_total": len(self.recording.events),
            "last_update_id": self.keeper.last_update_id if self.keeper.known else None,
            "book_known": self.keeper.known,
            "ended": self.ended,
            "frames_sent": dict(self.sent),
            "frames_dropped": self.dropped,
            "stalled": self.emulator.faults.is_stalled(self.spec.name, self.name),
            "frames_withheld_stalled": self.stalled_frames,
            "subscribers": self.subscriber_count(),
            "price_precision": self.recording.price_precision,
            "size_precision": self.recording.size_precision,
        }


class Emulator:
    """The venue emulator: all markets on one aiohttp app."""

    def __init__(
        self,
        recordings: list[Recording],
        *,
        speed: float = 1.0,
        start_mode: str = "on-subscribe",
        copies: dict[tuple[str, str], int] | None = None,
        ping_interval: float = 20.0,
        host: str = "127.0.0.1",
        port: int = 0,
        hold_timeout: float = HOLD_TIMEOUT_S,
    ) -> None:
        if start_mode not in START_MODES:
            raise ValueError(f"start mode must be one of {START_MODES}")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.start_mode = start_mode
        self.ping_interval = ping_interval
        self.host = host
        self.port = port
        self.hold_timeout = hold_timeout
        self.faults = FaultState()
        self.markets = {name: MarketState(spec) for name, spec in MARKETS.items()}
        self._recordings = recordings
        self._copies = dict(copies or {})
        self._runner: web.AppRunner | None = None
        self._started_at = 0.0
        self.app = self._build_app()

    # ----------------------------------------------------------------- setup

    def _add_symbols(self) -> None:
        known = {(r.market, r.symbol) for r in self._recordings}
        for key in self._copies:
            if key not in known:
                raise ValueError(f"--copies names {key[0]}:{key[1]}, which is not loaded")
        for rec in self._recordings:
            market = self.markets[rec.market]
            names: list[tuple[str, Renamer | None]] = [(rec.symbol, None)]
            count = self._copies.get((rec.market, rec.symbol), 0)
            names += [(n, Renamer(rec.symbol, n)) for n in copy_names(rec.symbol, count)]
            for name, renamer in names:
                if name in market.symbols:
                    raise ValueError(f"{rec.market}:{name} is served twice")
                rt = SymbolRuntime(self, market, rec, name, renamer)
                market.symbols[name] = rt
                market.by_lower[name.lower()] = rt

    def runtimes(self) -> list[SymbolRuntime]:
        return [rt for m in self.markets.values() for rt in m.symbols.values()]

    def symbol_table(self) -> list[dict[str, Any]]:
        """Every served symbol with its market, precisions and origin."""
        return [
            {
                "market": rt.spec.name,
                "symbol": rt.name,
                "price_precision": rt.recording.price_precision,
                "size_precision": rt.recording.size_precision,
                "copy_of": rt.renamer.original if rt.renamer else None,
                "files": [str(p) for p in rt.recording.files],
            }
            for rt in self.runtimes()
        ]

    def served_markets(self) -> list[str]:
        return [name for name, m in self.markets.items() if m.symbols]

    def urls(self) -> dict[str, Any]:
        markets = self.served_markets()
        return {
            "venue_urls": venue_urls(self.host, self.port, markets),
            "markets": {
                m: {
                    "http": http_base(self.host, self.port, m),
                    "ws": ws_base(self.host, self.port, m),
                }
                for m in markets
            },
            "symbols": self.symbol_table(),
        }

    def _build_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/_emulator/stats", self._h_stats)
        r.add_get("/_emulator/urls", self._h_urls)
        r.add_get("/_emulator/book", self._h_book)
        r.add_get("/_emulator/derivatives", self._h_derivatives)
        r.add_post("/_emulator/fault", self._h_fault)
        r.add_post("/_emulator/clear", self._h_clear)
        r.add_post("/_emulator/start", self._h_start)
        for name, spec in MARKETS.items():
            market = self.markets[name]
            if spec.is_binance:
                prefix = f"/{name}{spec.rest_prefix}"
                r.add_get(f"{prefix}/depth", self._bind(self._h_depth, market))
                if spec.is_futures:
                    r.add_get(f"{prefix}/openInterest", self._bind(self._h_open_interest, market))
                r.add_get(f"{prefix}/ping", self._bind(self._h_ping, market))
                r.add_get(f"{prefix}/time", self._bind(self._h_time, market))
                r.add_get(f"/{name}/stream", self._bind(self._h_binance_ws, market))
                r.add_get(f"/{name}/ws", self._bind(self._h_binance_ws, market))
                r.add_get(f"/{name}/ws/{{stream}}", self._bind(self._h_binance_ws, market))
            else:
                r.add_get(f"/{name}{spec.ws_path}", self._bind(self._h_bybit_ws, market))
                r.add_get(f"/{name}/v5/market/orderbook", self._bind(self._h_bybit_book, market))
        app.on_shutdown.append(self._on_shutdown)
        return app

    @staticmethod
    def _bind(
        handler: Callable[[web.Request, MarketState], Awaitable[web.StreamResponse]],
        market: MarketState,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def bound(request: web.Request) -> web.StreamResponse:
            return await handler(request, market)

        return bound

    async def start(self) -> None:
        """Bind, start the pacing tasks (and the clocks, in ``now`` mode)."""
        self._add_symbols()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._started_at = asyncio.get_running_loop().time()
        for rt in self.runtimes():
            rt.task = asyncio.create_task(rt.pump(), name=f"pump-{rt.spec.name}-{rt.name}")
            if self.start_mode == "now":
                rt.start_clock()

    async def stop(self) -> None:
        for rt in self.runtimes():
            if rt.task is not None:
                rt.task.cancel()
        for rt in self.runtimes():
            if rt.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await rt.task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_shutdown(self, app: web.Application) -> None:
        for market in self.markets.values():
            for conn in list(market.connections):
                conn.closed = True
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1001, message=b"server shutdown")

    # --------------------------------------------------------------- control

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object")
        return body

    def _targets(self, market: str | None, symbol: str | None) -> list[SymbolRuntime]:
        if market is not None and market not in self.markets:
            raise web.HTTPBadRequest(text=f"unknown market {market!r}")
        out = [
            rt
            for rt in self.runtimes()
            if (market is None or rt.spec.name == market)
            and (symbol is None or rt.name == symbol.upper())
        ]
        if symbol is not None and not out:
            raise web.HTTPBadRequest(text=f"unknown symbol {symbol!r}")
        return out

    def stats(self) -> dict[str, Any]:
        now = asyncio.get_running_loop().time()
        return {
            "speed": self.speed,
            "start_mode": self.start_mode,
            "ping_interval_s": self.ping_interval,
            "uptime_s": round(now - self._started_at, 3),
            "faults": self.faults.describe(now),
            "markets": {
                name: m.stats(now)
                for name, m in self.markets.items()
                if m.symbols or m.connections_total or m.rest_requests
            },
        }

    async def _h_stats(self, request: web.Request) -> web.StreamResponse:
        return _json(self.stats())

    async def _h_urls(self, request: web.Request) -> web.StreamResponse:
        return _json(self.urls())

    async def _h_book(self, request: web.Request) -> web.StreamResponse:
        market = request.query.get("market", "")
        symbol = request.query.get("symbol", "").upper()
        rt = self.markets[market].symbols.get(symbol) if market in self.markets else None
        if rt is None:
            return _json({"error": f"unknown market/symbol {market}/{symbol}"}, status=404)
        depth_raw = request.query.get("depth")
        depth = int(depth_raw) if depth_raw and depth_raw.isdigit() else None
        rt.catch_up()
        bids, asks = rt.keeper.book.top(depth) if rt.keeper.known else ([], [])
        return _json(
            {
                "market": market,
                "symbol": symbol,
                "known": rt.keeper.known,
                "last_update_id": rt.keeper.last_update_id if rt.keeper.known else None,
                "exchange_time_ms": rt.exchange_ms() if rt.clock.started else None,
                "frames_passed": rt.cursor.index,
                "ended": rt.ended,
                "bids": bids,
                "asks": asks,
            }
        )

    async def _h_derivatives(self, request: web.Request) -> web.StreamResponse:
        """The synthetic derivatives frames dispatched so far for one symbol (JSON)."""
        market = request.query.get("market", "")
        symbol = request.query.get("symbol", "").upper()
        rt = self.markets[market].symbols.get(symbol) if market in self.markets else None
        if rt is None:
            return _json({"error": f"unknown market/symbol {market}/{symbol}"}, status=404)
        rt.catch_up()
        frames = [orjson.loads(t) for t in rt.derived]
        return _json({"market": market, "symbol": symbol, "frames": frames})

    async def _h_fault(self, request: web.Request) -> web.StreamResponse:
        try:
            fault = parse_fault(await self._body(request))
        except FaultError as exc:
            return _json({"error": str(exc)}, status=400)
        if fault.symbol is not None and fault.symbol not in self.markets[fault.market].symbols:
            return _json({"error": f"unknown symbol {fault.market}:{fault.symbol}"}, status=400)
        result: dict[str, Any] = {"ok": True, "fault": fault.kind}
        if fault.kind == "disconnect":
            result["disconnected"] = self.disconnect(fault)
        else:
            self.faults.apply(fault, asyncio.get_running_loop().time())
        log.warning("fault %s", fault)
        return _json(result)

    def disconnect(self, fault: Fault) -> int:
        market = self.markets[fault.market]
        hit = [
            c
            for c in market.connections
            if fault.symbol is None
            or any(self._conn_symbol(market, s) == fault.symbol for s in c.streams)
            or any(t.symbol == fault.symbol for t in c.topics.values())
        ]
        for conn in hit:
            conn.abort()
        return len(hit)

    def _conn_symbol(self, market: MarketState, stream: str) -> str | None:
        ref = parse_stream(stream, market.spec.is_futures)
        rt = market.by_lower.get(ref.symbol_lower) if ref else None
        return rt.name if rt else None

    async def _h_clear(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        market, symbol = body.get("market"), body.get("symbol")
        if market is not None and market not in self.markets:
            return _json({"error": f"unknown market {market!r}"}, status=400)
        self.faults.clear(market, symbol.upper() if isinstance(symbol, str) else None)
        return _json({"ok": True})

    async def _h_start(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        started = [
            f"{rt.spec.name}:{rt.name}"
            for rt in self._targets(body.get("market"), body.get("symbol"))
            if rt.start_clock()
        ]
        return _json({"ok": True, "started": started})

    # ------------------------------------------------------------ Binance REST

    def _rest_headers(self, market: MarketState, ip: str) -> dict[str, str]:
        used = str(market.accounting.used_weight(ip, time.time()))
        return {"X-MBX-USED-WEIGHT-1M": used, "X-MBX-USED-WEIGHT": used}

    def _rest_reply(
        self,
        market: MarketState,
        ip: str,
        body: Any,
        status: int = 200,
        extra: dict[str, str] | None = None,
    ) -> web.Response:
        market.rest_requests[str(status)] += 1
        headers = self._rest_headers(market, ip)
        headers.update(extra or {})
        return _json(body, status=status, headers=headers)

    def _rest_gate(
        self, request: web.Request, market: MarketState, weight: int
    ) -> web.Response | None:
        """Fault switches and the IP weight limit, before a request is served."""
        ip = request.remote or "?"
        now = asyncio.get_running_loop().time()
        fault = self.faults.take_http_error(market.spec.name, now)
        if fault is not None:
            if fault.status == 418:
                until = int(time.time() * 1000) + fault.retry_after * 1000
                msg = (
                    f"Way too many requests; IP({ip}) banned until {until}. "
                    "Please use WebSocket Streams for live updates to avoid bans."
                )
            else:
                msg = self._weight_msg(market, ip)
            return self._rest_reply(
                market,
                ip,
                binance_rest_error(-1003, msg),
                fault.status,
                {"Retry-After": str(fault.retry_after)},
            )
        allowed, _ = market.accounting.weight(ip, time.time(), weight)
        if not allowed:
            return self._rest_reply(
                market,
                ip,
                binance_rest_error(-1003, self._weight_msg(market, ip)),
                429,
                {"Retry-After": str(MinuteWeight.retry_after(time.time()))},
            )
        return None

    @staticmethod
    def _weight_msg(market: MarketState, ip: str) -> str:
        return (
            f"Too many requests; current limit of IP({ip}) request weight per minute is "
            f"{market.accounting.limits.weight_per_minute}. Please use WebSocket Streams for "
            "live updates to avoid polling the API."
        )

    async def _h_ping(self, request: web.Request, market: MarketState) -> web.StreamResponse:
        ip = request.remote or "?"
        return self._rest_gate(request, market, 1) or self._rest_reply(market, ip, {})

    async def _h_time(self, request: web.Request, market: MarketState) -> web.StreamResponse:
        ip = request.remote or "?"
        denied = self._rest_gate(request, market, 1)
        return denied or self._rest_reply(market, ip, {"serverTime": int(time.time() * 1000)})

    async def _h_depth(self, request: web.Request, market: MarketState) -> web.StreamResponse:
        spec = market.spec
        ip = request.remote or "?"
        symbol = request.query.get("symbol", "").upper()
        if not symbol:
            return self._rest_reply(
                market,
                ip,
                binance_rest_error(
                    -1102,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                ),
                400,
            )
        try:
            limit = depth_limit(spec, request.query.get("limit"))
        except DepthParamError as exc:
            return self._rest_reply(market, ip, binance_rest_error(exc.code, exc.msg), 400)
        denied = self._rest_gate(request, market, depth_weight(spec, limit))
        if denied is not None:
            return denied
        rt = market.symbols.get(symbol)
        if rt is None:
            return self._rest_reply(market, ip, binance_rest_error(-1121, "Invalid symbol."), 400)
        held = not rt.keeper.known
        if not await rt.wait_book(self.hold_timeout):
            return self._rest_reply(
                market,
                ip,
                binance_rest_error(
                    -1007,
                    "Timeout waiting for response from backend server. "
                    "Send status unknown; execution status unknown.",
                ),
                503,
            )
        recorded = rt.keeper.recorded_snapshot or (rt.keeper.last_snapshot if held else None)
        if recorded is not None:
            # The stream stands at the recorded snapshot: answer what the venue answered.
            body = orjson.loads(recorded.text)
            body["bids"], body["asks"] = body["bids"][:limit], body["asks"][:limit]
            if "symbol" in body:
                body["symbol"], body["pair"] = rt.name, pair_of(rt.name)
        else:
            bids, asks = rt.keeper.book.top(limit)
            body = binance_depth_body(
                spec.kind,
                rt.keeper.last_update_id,
                bids,
                asks,
                exchange_ms=rt.exchange_ms(),
                symbol=rt.name,
                pair=pair_of(rt.name),
            )
        delay = self.faults.snapshot_delay(spec.name, rt.name, asyncio.get_running_loop().time())
        if delay > 0:
            await asyncio.sleep(delay)
        return self._rest_reply(market, ip, body)

    async def _h_open_interest(
        self, request: web.Request, market: MarketState
    ) -> web.StreamResponse:
        """``GET openInterest?symbol=S`` (weight 1): the synthetic open interest at the
        symbol's current exchange time (``derivatives.open_interest``)."""
        ip = request.remote or "?"
        symbol = request.query.get("symbol", "").upper()
        if not symbol:
            msg = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            return self._rest_reply(market, ip, binance_rest_error(-1102, msg), 400)
        denied = self._rest_gate(request, market, 1)
        if denied is not None:
            return denied
        rt = market.symbols.get(symbol)
        if rt is None:
            return self._rest_reply(market, ip, binance_rest_error(-1121, "Invalid symbol."), 400)
        rt.catch_up()
        pair = pair_of(rt.name) if market.spec.kind == "coinm" else None
        body = binance_open_interest_body(rt.name, pair, rt.exchange_ms())
        rt.derived.append(orjson.dumps({"rest": "openInterest", **body}).decode())
        return self._rest_reply(market, ip, body)

    # -------------------------------------------------------------- Bybit REST

    async def _h_bybit_book(self, request: web.Request, market: MarketState) -> web.StreamResponse:
        """``GET /v5/market/orderbook``: the true book now, in Bybit's REST envelope."""
        category = request.query.get("category", "")
        rt = market.symbols.get(request.query.get("symbol", "").upper())
        now_ms = int(time.time() * 1000)
        if category != market.spec.kind or rt is None:
            market.rest_requests["200"] += 1
            return _json(
                {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {},
                 "retExtInfo": {}, "time": now_ms}
            )
        limit_raw = request.query.get("limit", "")
        limit = int(limit_raw) if limit_raw.isdigit() and int(limit_raw) > 0 else 25
        if not await rt.wait_book(self.hold_timeout):
            market.rest_requests["503"] += 1
            return _json({"retCode": 10000, "retMsg": "Server Timeout"}, status=503)
        bids, asks = rt.keeper.book.top(limit)
        market.rest_requests["200"] += 1
        return _json(
            {
                "retCode": 0,
                "retMsg": "OK",
                "result": {
                    "s": rt.name,
                    "b": bids,
                    "a": asks,
                    "ts": rt.exchange_ms(),
                    "u": rt.keeper.last_update_id,
                    "seq": rt.keeper.seq,
                    "cts": rt.keeper.cts,
                },
                "retExtInfo": {},
                "time": now_ms,
            }
        )

    # --------------------------------------------------------- WebSocket: common

    async def _upgrade(
        self, request: web.Request, market: MarketState
    ) -> tuple[web.StreamResponse | None, web.WebSocketResponse | None]:
        now = asyncio.get_running_loop().time()
        ip = request.remote or "?"
        if self.faults.take_refuse(market.spec.name, now):
            market.refused += 1
            return _json({"code": -1, "msg": "emulator: connections refused"}, status=503), None
        if not market.accounting.connection_attempt(ip, now):
            market.refused += 1
            body = binance_rest_error(-1003, "Too many connection attempts from this IP.")
            return _json(body, status=429, headers={"Retry-After": "60"}), None
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        if not ws.can_prepare(request).ok:
            return _json({"code": -1, "msg": "WebSocket upgrade expected"}, status=400), None
        return None, ws

    def _open(self, conn: Connection) -> None:
        market = conn.market
        market.connections.add(conn)
        market.connections_total += 1
        conn.tasks.append(asyncio.create_task(conn.writer()))

    def _close(self, conn: Connection) -> None:
        conn.closed = True
        conn.queue.put_nowait(None)
        for task in conn.tasks[1:]:
            task.cancel()
        market = conn.market
        market.connections.discard(conn)
        for rt in market.symbols.values():
            rt.remove_conn(conn)

    def _note_pong(self, conn: Connection) -> None:
        conn.market.pongs_received += 1

    # -------------------------------------------------------- Binance WebSocket

    def _binance_subscribe(self, conn: Connection, name: str) -> None:
        conn.streams.append(name)
        market = conn.market
        ref = parse_stream(name, market.spec.is_futures)
        rt = market.by_lower.get(ref.symbol_lower) if ref else None
        if ref is None or rt is None:
            market.unknown_streams += 1
            return
        rt.add_stream(conn, name, ref.kind)
        rt.catch_up()

    def _binance_unsubscribe(self, conn: Connection, name: str) -> None:
        conn.streams.remove(name)
        market = conn.market
        ref = parse_stream(name, market.spec.is_futures)
        rt = market.by_lower.get(ref.symbol_lower) if ref else None
        if rt is not None:
            rt.remove_conn(conn, name)

    async def _h_binance_ws(
        self, request: web.Request, market: MarketState
    ) -> web.StreamResponse:
        denied, ws = await self._upgrade(request, market)
        if ws is None:
            assert denied is not None
            return denied
        names = initial_streams(request.match_info.get("stream"), request.query.get("streams"))
        if not market.accounting.streams(0, len(names)):
            market.refused += 1
            body = binance_rest_error(-1, f"more than {market.spec.limits.streams_per_connection}"
                                      " streams in one connection")
            return _json(body, status=400)
        await ws.prepare(request)
        conn = Connection(market, ws, request)
        conn.combined = request.path.endswith("/stream")
        self._open(conn)
        conn.tasks.append(asyncio.create_task(conn.pinger(self.ping_interval)))
        acct = market.accounting
        try:
            for name in names:
                self._binance_subscribe(conn, name)
            loop = asyncio.get_running_loop()
            while not conn.closed:
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):
                    break
                if not acct.message(conn.rate, loop.time()):
                    log.warning("connection %s: over %s messages/s, dropped", conn.id,
                                acct.limits.messages_per_second)
                    conn.closed = True
                    await ws.close(code=1008, message=b"Too many requests")
                    break
                if await self._ping_pong(conn, ws, msg):
                    continue
                if msg.type is WSMsgType.TEXT:
                    self._binance_text(conn, msg.data)
                else:
                    conn.send(orjson.dumps(binance_error(3, "Invalid JSON: binary frame")).decode())
                    market.error_replies += 1
        finally:
            self._close(conn)
        return ws

    async def _ping_pong(self, conn: Connection, ws: web.WebSocketResponse, msg: Any) -> bool:
        """Answer a client's ping frame, note a pong; True if ``msg`` was one of them."""
        if msg.type is WSMsgType.PING:
            conn.market.client_pings += 1
            await ws.pong(msg.data)
            return True
        if msg.type is WSMsgType.PONG:
            self._note_pong(conn)
            return True
        return False

    def _binance_text(self, conn: Connection, text: str) -> None:
        market = conn.market
        outcome = binance_control(text, conn.streams, conn.combined)
        reply = outcome.reply
        if outcome.adding and not market.accounting.streams(len(conn.streams), outcome.adding):
            reply = stream_limit_error(
                market.spec.limits.streams_per_connection or 0, reply.get("id")
            )
            outcome.subscribe = []
        if "error" in reply:
            market.error_replies += 1
        conn.send(orjson.dumps(reply).decode())
        if outcome.combined is not None:
            conn.combined = outcome.combined
        for name in outcome.unsubscribe:
            self._binance_unsubscribe(conn, name)
        for name in outcome.subscribe:
            self._binance_subscribe(conn, name)

    # ---------------------------------------------------------- Bybit WebSocket

    async def _h_bybit_ws(self, request: web.Request, market: MarketState) -> web.StreamResponse:
        denied, ws = await self._upgrade(request, market)
        if ws is None:
            assert denied is not None
            return denied
        await ws.prepare(request)
        conn = Connection(market, ws, request)
        self._open(conn)
        try:
            while not conn.closed:
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                                WSMsgType.ERROR):
                    break
                market.accounting.message(conn.rate, asyncio.get_running_loop().time())
                if await self._ping_pong(conn, ws, msg):
                    continue
                if msg.type is WSMsgType.TEXT:
                    self._bybit_text(conn, msg.data)
        finally:
            self._close(conn)
        return ws

    def _bybit_text(self, conn: Connection, text: str) -> None:
        market = conn.market
        outcome = bybit_op(
            text,
            conn_id=conn.id,
            category=market.spec.kind,
            topics=list(conn.topics),
            symbols=set(market.symbols),
            depths=market.spec.book_depths,
            args_violation=market.accounting.subscribe_args,
        )
        reply = outcome.reply
        if reply.get("op") == "ping":
            market.app_pings += 1
        elif not reply.get("success"):
            market.error_replies += 1
        conn.send(orjson.dumps(reply).decode())
        for name in outcome.unsubscribe:
            conn.topics.pop(name, None)
            topic_symbol = name.rsplit(".", 1)[-1]
            rt = market.symbols.get(topic_symbol)
            if rt is not None:
                rt.remove_conn(conn, name)
        touched: list[tuple[SymbolRuntime, Topic]] = []
        for topic in outcome.subscribe:
            conn.topics[topic.name] = topic
            rt = market.symbols[topic.symbol]
            if topic.kind == "orderbook":
                assert topic.depth is not None
                rt.bybit_book_subscribe(conn, topic.depth)
            elif topic.kind == "publicTrade":
                rt.add_stream(conn, topic.name, Kind.TRADE)
            elif topic.kind == "tickers" and market.spec.name == "bybit-linear":
                rt.add_stream(conn, topic.name, Kind.MARK)
                rt.bybit_send_ticker_snapshot(conn)
            elif topic.kind == "allLiquidation" and market.spec.name == "bybit-linear":
                rt.add_stream(conn, topic.name, Kind.LIQUIDATION)
            touched.append((rt, topic))
        for rt, topic in touched:
            rt.catch_up()
            if topic.depth is not None:
                rt.bybit_send_snapshot(conn, topic.depth)
