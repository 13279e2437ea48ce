"""The venues' public WebSocket control messages and REST bodies (pure functions).

Binance (WebSocket Streams docs, "Live Subscribing/Unsubscribing to streams"): a client
sends ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE"|"LIST_SUBSCRIPTIONS"|"SET_PROPERTY"|
"GET_PROPERTY", "params": [...], "id": N}`` and gets ``{"result": null, "id": N}``
(LIST: the list; GET_PROPERTY: the value); malformed messages get
``{"error": {"code": C, "msg": ...}, "id": ...}`` with the documented codes 0-3.

Bybit v5 public (WebSocket "Connect" docs): ``{"op": "subscribe"|"unsubscribe"|"ping",
"args": [...], "req_id": ...}``; replies ``{"success", "ret_msg", "conn_id", "req_id",
"op"}`` (public spot: ``ret_msg`` ``"subscribe"``, linear: ``""``); a ping gets
``{"success": true, "ret_msg": "pong", "conn_id", "req_id", "op": "ping"}``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from context8.emulator.recording import Kind

BINANCE_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_RE = re.compile(r"^[A-Za-z0-9]{1,36}$")

#: Diff-depth stream suffixes a client may subscribe to, per Binance market kind; all are
#: served from the recorded diff stream (renamed), whose update-id chain they share.
DEPTH_SUFFIXES = {
    "futures": ("depth", "depth@0ms", "depth@100ms", "depth@250ms", "depth@500ms"),
    "spot": ("depth", "depth@100ms", "depth@1000ms"),
}


def binance_error(code: int, msg: str, req_id: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": req_id}


def binance_rest_error(code: int, msg: str) -> dict[str, Any]:
    return {"code": code, "msg": msg}


@dataclass
class ControlOutcome:
    """What one Binance control message does to its connection."""

    reply: dict[str, Any]
    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    combined: bool | None = None
    #: streams the SUBSCRIBE would have added (for the per-connection limit check)
    adding: int = 0


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, str) and bool(_ID_RE.match(value))


def binance_control(text: str | bytes, streams: Sequence[str], combined: bool) -> ControlOutcome:
    """Interpret one text message a client sent on a Binance stream connection.

    ``streams`` are the connection's current streams. The per-connection stream limit
    is checked by the caller with ``outcome.adding`` (the reply then becomes an error).
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
        return ControlOutcome(
            binance_error(3, f"Invalid JSON: expected value at line {line} column {col}")
        )
    if not isinstance(msg, dict):
        return ControlOutcome(binance_error(2, "Invalid request: expected a JSON object"))
    req_id = msg.get("id")
    if "id" not in msg or not _valid_id(req_id):
        return ControlOutcome(
            binance_error(2, "Invalid request: request ID must be an unsigned integer")
        )
    method = msg.get("method")
    if method is None:
        return ControlOutcome(binance_error(2, "Invalid request: missing field `method`", req_id))
    if method not in BINANCE_METHODS:
        expected = ", ".join(f"`{m}`" for m in BINANCE_METHODS)
        text = f"Invalid request: unknown variant `{method}`, expected one of {expected}"
        return ControlOutcome(binance_error(2, text, req_id))
    params = msg.get("params", [])
    if method == "LIST_SUBSCRIPTIONS":
        return ControlOutcome({"result": list(streams), "id": req_id})
    if not isinstance(params, list):
        return ControlOutcome(binance_error(2, "Invalid request: params must be an array", req_id))
    if method in ("SET_PROPERTY", "GET_PROPERTY"):
        if not params or not isinstance(params[0], str):
            return ControlOutcome(
                binance_error(2, "Invalid request: property name must be a string", req_id)
            )
        if params[0] != "combined":
            return ControlOutcome(binance_error(0, "Unknown property", req_id))
        if method == "GET_PROPERTY":
            return ControlOutcome({"result": combined, "id": req_id})
        if len(params) < 2 or not isinstance(params[1], bool):
            return ControlOutcome(binance_error(1, "Invalid value type: expected Boolean", req_id))
        return ControlOutcome({"result": None, "id": req_id}, combined=params[1])
    if not all(isinstance(p, str) and p for p in params):
        return ControlOutcome(
            binance_error(2, "Invalid request: params must be stream names", req_id)
        )
    ok = {"result": None, "id": req_id}
    if method == "SUBSCRIBE":
        current = set(streams)
        new = list(dict.fromkeys(p for p in params if p not in current))
        return ControlOutcome(ok, subscribe=new, adding=len(new))
    gone = [p for p in dict.fromkeys(params) if p in set(streams)]
    return ControlOutcome(ok, unsubscribe=gone)


def stream_limit_error(limit: int, req_id: Any) -> dict[str, Any]:
    return binance_error(
        2, f"Invalid request: more than {limit} streams on one connection", req_id
    )


@dataclass(frozen=True)
class StreamRef:
    """What a Binance stream name refers to: a symbol's recorded stream of a kind."""

    symbol_lower: str
    kind: Kind


def parse_stream(name: str, futures: bool) -> StreamRef | None:
    """``btcusdt@depth@0ms`` -> (btcusdt, DEPTH); None for streams the emulator has no data for."""
    symbol, sep, suffix = name.partition("@")
    if not sep or not symbol:
        return None
    if suffix in DEPTH_SUFFIXES["futures" if futures else "spot"]:
        return StreamRef(symbol, Kind.DEPTH)
    if suffix == "trade":
        return StreamRef(symbol, Kind.TRADE)
    if suffix == "bookTicker":
        return StreamRef(symbol, Kind.TICKER)
    if futures and suffix in ("markPrice", "markPrice@1s"):
        return StreamRef(symbol, Kind.MARK)  # synthetic (derivatives.py), one per second
    if futures and suffix == "forceOrder":
        return StreamRef(symbol, Kind.LIQUIDATION)
    return None


def initial_streams(path_stream: str | None, query_streams: str | None) -> list[str]:
    """Streams named in the connect URL: ``/ws/<stream>`` or ``/stream?streams=a/b/c``."""
    raw = path_stream if path_stream is not None else (query_streams or "")
    return list(dict.fromkeys(s for s in raw.split("/") if s))


def data_part(combined_text: str) -> str:
    """The ``data`` payload of a combined-stream frame (what a raw ``/ws`` client gets)."""
    i = combined_text.find(',"data":')
    if combined_text.startswith('{"stream":') and i > 0 and combined_text.endswith("}"):
        return combined_text[i + 8 : -1]
    return orjson.dumps(orjson.loads(combined_text)["data"]).decode()


def rename_stream(combined_text: str, recorded: str, wanted: str) -> str:
    """The frame as it appears on stream ``wanted`` (an alias of the ``recorded`` one)."""
    return combined_text.replace(f'"stream":"{recorded}"', f'"stream":"{wanted}"', 1)


# ---------------------------------------------------------------------------- Bybit


@dataclass(frozen=True)
class Topic:
    """A Bybit public topic: ``orderbook.50.BTCUSDT``, ``publicTrade.BTCUSDT``, ..."""

    name: str
    kind: str
    symbol: str
    depth: int | None = None


_PLAIN_TOPICS = ("publicTrade", "tickers", "allLiquidation", "liquidation")


def parse_topic(name: str) -> Topic | None:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
        return Topic(name, "orderbook", parts[2], int(parts[1]))
    if len(parts) == 2 and parts[0] in _PLAIN_TOPICS and parts[1]:
        return Topic(name, parts[0], parts[1])
    return None


@dataclass
class BybitOutcome:
    """What one Bybit op does to its connection."""

    reply: dict[str, Any]
    subscribe: list[Topic] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    violation: str | None = None


def bybit_reply(
    success: bool, ret_msg: str, conn_id: str, req_id: Any, op: str
) -> dict[str, Any]:
    reply: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn_id}
    reply["req_id"] = "" if req_id is None else req_id
    reply["op"] = op
    return reply


def bybit_op(
    text: str | bytes,
    *,
    conn_id: str,
    category: str,
    topics: Sequence[str],
    symbols: set[str],
    depths: tuple[int, ...],
    args_violation: Any = None,
) -> BybitOutcome:
    """Interpret one text message on a Bybit public connection.

    ``args_violation(count, chars_total) -> str | None`` checks the venue's args limits
    (and counts violations); ``symbols`` are the symbols with data in this category.
    """
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError:
        return BybitOutcome(bybit_reply(False, "Invalid JSON", conn_id, None, ""))
    if not isinstance(msg, dict):
        return BybitOutcome(bybit_reply(False, "Invalid request", conn_id, None, ""))
    op = msg.get("op")
    req_id = msg.get("req_id")
    if op == "ping":
        return BybitOutcome(bybit_reply(True, "pong", conn_id, req_id, "ping"))
    if op not in ("subscribe", "unsubscribe"):
        return BybitOutcome(
            bybit_reply(False, f"error:unsupported op {op}", conn_id, req_id, str(op or ""))
        )
    args = msg.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return BybitOutcome(bybit_reply(False, "error:args must be topics", conn_id, req_id, op))
    ok_msg = op if category == "spot" else ""
    if op == "unsubscribe":
        return BybitOutcome(
            bybit_reply(True, ok_msg, conn_id, req_id, op),
            unsubscribe=[a for a in args if a in set(topics)],
        )
    if args_violation is not None:
        chars = sum(len(t) for t in topics if t not in args) + sum(len(a) for a in args)
        violated = args_violation(len(args), chars)
        if violated:
            return BybitOutcome(
                bybit_reply(False, violated, conn_id, req_id, op), violation=violated
            )
    parsed: list[Topic] = []
    bad: list[str] = []
    for arg in args:
        topic = parse_topic(arg)
        if topic is not None and topic.symbol in symbols and topic.depth in (None, *depths):
            parsed.append(topic)
        else:
            bad.append(arg)
    if bad:
        return BybitOutcome(
            bybit_reply(False, f"Invalid symbol :[{','.join(bad)}]", conn_id, req_id, op)
        )
    return BybitOutcome(bybit_reply(True, ok_msg, conn_id, req_id, op), subscribe=parsed)


def bybit_book_message(
    topic: str,
    symbol: str,
    bids: list[list[str]],
    asks: list[list[str]],
    *,
    update_id: int,
    seq: int,
    ts: int,
    cts: int,
) -> str:
    """A ``snapshot`` message in the recording's layout (topic, type, ts, data, cts)."""
    return orjson.dumps(
        {
            "topic": topic,
            "type": "snapshot",
            "ts": ts,
            "data": {"s": symbol, "b": bids, "a": asks, "u": update_id, "seq": seq},
            "cts": cts,
        }
    ).decode()


def binance_depth_body(
    kind: str,
    last_update_id: int,
    bids: list[list[str]],
    asks: list[list[str]],
    *,
    exchange_ms: int,
    symbol: str,
    pair: str | None,
) -> dict[str, Any]:
    """The REST depth body: futures carry E and T, COIN-M adds symbol and pair."""
    body: dict[str, Any] = {"lastUpdateId": last_update_id}
    if kind in ("usdm", "coinm"):
        body["E"] = exchange_ms
        body["T"] = exchange_ms
        if kind == "coinm":
            body["symbol"] = symbol
            body["pair"] = pair or symbol.split("_", 1)[0]
    body["bids"] = bids
    body["asks"] = asks
    return body
