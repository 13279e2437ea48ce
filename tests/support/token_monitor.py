"""An outside record of fencing-token grants and accepted writes, from Redis ``MONITOR``.

``MONITOR`` streams every command a redis-server executes, in execution order and with
its arguments, including the commands run inside Lua scripts (``[0 lua]``). From it:

* a **grant** is the lease script's ``SET token:{S} <token>`` (an ``INCR``/``INCRBY`` of
  the token key, the design before clock-based tokens, counts too: previous value + n);
* an accepted **write** is fenced_publish's ``XADD audit:{S} ... token <t> node <n> ...``;
* a **mark** is a script this watcher runs right after each (re)connect, publishing every
  watched token key's value at that point of the command sequence, so that the writes
  before the next grant can be checked too.

The events of one connection form a *segment*; a Redis crash ends it (the watcher
reconnects and marks again). Grants are seen as they are executed, so a grant that the
server then loses with its unsynced writes is still on record here. The checks are pure
functions over the event list; the ``TokenTimeline`` thread only records.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from tests.support.polling import poll

#: Pub/sub channel of the marks (nobody subscribes: MONITOR shows the PUBLISH).
MARK_CHANNEL = "test:token-monitor:mark"
_MARK_LUA = """
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. (redis.call('GET', KEYS[1]) or '0'))
return 1
"""
_ARG_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_COMMANDS = {b"SET", b"INCR", b"INCRBY", b"DEL", b"XADD", b"PUBLISH", b"GETSET", b"UNLINK"}
#: The label of the coordinator's leadership epoch (granted by the same script).
EPOCH = "epoch"


@dataclass(frozen=True)
class TokenEvent:
    """One grant, accepted write, mark or anomaly, in server execution order."""

    segment: int
    #: "grant", "write", "mark" or "anomaly"
    kind: str
    #: The symbol (or ``EPOCH``).
    label: str
    token: int | None
    #: Writer node (writes) or what went wrong (anomalies).
    detail: str = ""
    #: Server time of the command (MONITOR's timestamp), microseconds.
    server_us: int = 0
    #: Executed by a script (a grant outside the lease script is an anomaly).
    lua: bool = True


def _unescape(raw: bytes) -> str:
    return raw.decode("unicode_escape") if b"\\" in raw else raw.decode()


def parse_monitor_line(line: bytes) -> tuple[int, bool, list[str]] | None:
    """``(server µs, run by a script, [command, args...])`` of one MONITOR line."""
    if line.startswith(b"+"):
        line = line[1:]
    ts, sep, rest = line.partition(b" [")
    if not sep:
        return None
    source, sep, args = rest.partition(b"] ")
    if not sep:
        return None
    sec, _, frac = ts.partition(b".")
    server_us = int(sec) * 1_000_000 + int(frac.ljust(6, b"0")[:6] or b"0")
    lua = source.endswith(b" lua")
    return server_us, lua, [_unescape(a) for a in _ARG_RE.findall(args)]


def _command_and_key(line: bytes) -> tuple[bytes, bytes] | None:
    """Cheap look at a line's command name and first key, before any full parse."""
    at = line.find(b'] "')
    if at < 0:
        return None
    start = at + 3
    end = line.find(b'"', start)
    if end < 0:
        return None
    name = line[start:end].upper()
    if name not in _COMMANDS:
        return None
    key_start = end + 3  # past '" "'
    key_end = line.find(b'"', key_start)
    return (name, line[key_start:key_end]) if key_end > 0 else None


def _resp(command: Sequence[str]) -> bytes:
    """One command in RESP (the raw MONITOR connection has no client library)."""
    parts = [f"*{len(command)}\r\n".encode()]
    for arg in command:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class TokenTimeline:
    """Records grants and accepted writes of ``symbols`` (and the coordinator epoch)
    from MONITOR, in its own thread; reconnects (new segment) after a Redis restart."""

    def __init__(self, url: str, symbols: Iterable[str], epoch: bool = True) -> None:
        self.url = url
        self.symbols = tuple(symbols)
        parsed = redis.connection.parse_url(url)
        self._addr = (str(parsed.get("host", "127.0.0.1")), int(parsed.get("port", 6379)))
        #: The URL's ACL user (the embedded fleet's admin), if any.
        self._auth: dict[str, Any] = {
            k: parsed[k] for k in ("username", "password") if parsed.get(k) is not None
        }
        self._token_keys: dict[bytes, str] = {keys.token(s).encode(): s for s in self.symbols}
        if epoch:
            self._token_keys[keys.COORDINATOR_EPOCH.encode()] = EPOCH
        self._audit_keys: dict[bytes, str] = {keys.audit(s).encode(): s for s in self.symbols}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._events: list[TokenEvent] = []
        self._current: dict[str, int] = {}
        #: The connection in use (a new segment after every reconnect).
        self.segment = 0
        #: The latest segment in which every watched key has been marked.
        self.marked_segment = 0
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="token-monitor", daemon=True)

    # --- the recording thread ----------------------------------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self._token_keys.values())

    @property
    def anomalies(self) -> list[str]:
        return [f"{e.label}: {e.detail}" for e in self.events() if e.kind == "anomaly"]

    def start(self, timeout: float = 10.0) -> TokenTimeline:
        self._thread.start()
        self.wait_marked(after_segment=0, timeout=timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def wait_marked(self, after_segment: int | None = None, timeout: float = 15.0) -> int:
        """Block until a segment (after ``after_segment``, if given) has marked every key;
        return that segment (after a restart: pass the segment seen before it)."""

        def marked() -> int | None:
            seg = self.marked_segment
            ok = seg == self.segment and seg > (after_segment or 0)
            return seg if ok else None

        found: int = poll(marked, timeout, "the token monitor to (re)connect and mark")
        return found

    def events(self) -> list[TokenEvent]:
        with self._lock:
            return list(self._events)

    def _run(self) -> None:
        while not self._stop.is_set():
            sock: socket.socket | None = None
            try:
                sock = socket.create_connection(self._addr, timeout=1.0)
                hello = [["AUTH", *self._auth.values()]] if self._auth else []
                sock.sendall(b"".join(_resp(c) for c in [*hello, ["MONITOR"]]))
                buf = b""
                for _ in range(len(hello) + 1):
                    while b"\r\n" not in buf:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed before MONITOR answered")
                        buf += chunk
                    first, _, buf = buf.partition(b"\r\n")
                    if first != b"+OK":
                        raise ConnectionError(f"MONITOR refused: {first!r}")  # e.g. LOADING
                with self._lock:
                    self.segment += 1
                    self._current = {}
                self._mark()
                sock.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        chunk = sock.recv(1 << 20)
                    except TimeoutError:
                        continue
                    if not chunk:
                        raise ConnectionError("server closed the MONITOR connection")
                    buf += chunk
                    *lines, buf = buf.split(b"\r\n")
                    for line in lines:
                        self._handle(line)
                    if self.marked_segment != self.segment and all(
                        lbl in self._current for lbl in self.labels
                    ):
                        self.marked_segment = self.segment
            except (OSError, redis.RedisError):
                self.reconnects += 1
                self._stop.wait(0.05)  # reconnect back-off while Redis is down
            finally:
                if sock is not None:
                    sock.close()

    def _mark(self) -> None:
        client: Any = redis.Redis(
            host=self._addr[0],
            port=self._addr[1],
            socket_timeout=2,
            socket_connect_timeout=1,
            **self._auth,
        )
        try:
            for key, label in self._token_keys.items():
                client.eval(_MARK_LUA, 1, key, MARK_CHANNEL, label)
        finally:
            client.close()

    def _handle(self, line: bytes) -> None:
        head = _command_and_key(line)
        if head is None:
            return
        name, key = head
        is_mark = name == b"PUBLISH" and key == MARK_CHANNEL.encode()
        if key not in self._token_keys and key not in self._audit_keys and not is_mark:
            return
        parsed = parse_monitor_line(line)
        if parsed is None:
            return
        server_us, lua, args = parsed
        event = interpret(args, lua, self._token_keys, self._audit_keys, self._current)
        if event is None:
            return
        with self._lock:
            stamped = TokenEvent(
                self.segment, event.kind, event.label, event.token, event.detail, server_us, lua
            )
            self._events.append(stamped)
            if stamped.kind in ("grant", "mark") and stamped.token is not None:
                self._current[stamped.label] = stamped.token
            elif stamped.kind == "anomaly":
                self._current.pop(stamped.label, None)

    # --- the checks, over what was recorded ---------------------------------------------

    def violations(self, client: Any = None) -> tuple[int, list[str]]:
        """(accepted writes checked, violations) over everything recorded so far.

        ``client`` is accepted for compatibility and not used: MONITOR shows each write's
        token, so nothing has to be read back from the audit streams.
        """
        events = self.events()
        checked, _unchecked, bad = write_problems(events)
        return checked, [*self.anomalies, *grant_problems(events), *bad]


def interpret(
    args: Sequence[str],
    lua: bool,
    token_keys: Mapping[bytes, str],
    audit_keys: Mapping[bytes, str],
    current: Mapping[str, int],
) -> TokenEvent | None:
    """The event one executed command stands for (segment and time filled in later)."""
    if not args:
        return None
    name = args[0].upper()
    key = args[1].encode() if len(args) > 1 else b""
    if name == "PUBLISH" and args[1] == MARK_CHANNEL and len(args) > 2:
        label, _, value = args[2].partition(" ")
        return TokenEvent(0, "mark", label, int(value))
    if key in token_keys:
        label = token_keys[key]
        if name == "SET" and len(args) > 2 and lua:
            return TokenEvent(0, "grant", label, int(args[2]))
        if name in ("INCR", "INCRBY") and lua:
            step = int(args[2]) if name == "INCRBY" else 1
            before = current.get(label)
            if before is None:
                return TokenEvent(0, "anomaly", label, None, f"{name} from an unknown value")
            return TokenEvent(0, "grant", label, before + step)
        return TokenEvent(0, "anomaly", label, None, f"{' '.join(args[:3])} on the token key")
    if key in audit_keys and name == "XADD":
        fields = _xadd_fields(args)
        if "token" not in fields:
            return TokenEvent(0, "anomaly", audit_keys[key], None, "audit entry without token")
        return TokenEvent(0, "write", audit_keys[key], int(fields["token"]), fields.get("node", ""))
    return None


def _xadd_fields(args: Sequence[str]) -> dict[str, str]:
    """Field/value pairs of ``XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] n [LIMIT c]] id f v...``."""
    i = 2
    while i < len(args):
        word = args[i].upper()
        if word == "NOMKSTREAM":
            i += 1
        elif word in ("MAXLEN", "MINID"):
            i += 3 if args[i + 1] in ("~", "=") else 2
        elif word == "LIMIT":
            i += 2
        else:
            break
    body = args[i + 1 :]  # past the entry id
    return dict(zip(body[0::2], body[1::2], strict=False))


def grant_problems(events: Iterable[TokenEvent]) -> list[str]:
    """Every grant is larger than every grant before it, across restarts: a token is
    never granted twice and never goes back, even when the store lost the last grants."""
    best: dict[str, int] = {}
    bad: list[str] = []
    for e in events:
        if e.kind != "grant" or e.token is None:
            continue
        prev = best.get(e.label)
        if prev is not None and e.token <= prev:
            what = "granted again" if e.token == prev else "went back"
            bad.append(
                f"{e.label}: token {e.token} {what} (segment {e.segment}) after {prev} "
                "had been granted"
            )
        best[e.label] = e.token if prev is None else max(prev, e.token)
    return bad


def write_problems(events: Iterable[TokenEvent]) -> tuple[int, int, list[str]]:
    """(checked, unchecked, violations): each accepted write's token must equal the
    token stored at that point of the server's command sequence (the newest grant, or
    the value marked after a reconnect). Writes of a segment before the key's value is
    known (between a reconnect and its mark) are unchecked."""
    current: dict[tuple[int, str], int] = {}
    checked = unchecked = 0
    bad: list[str] = []
    for e in events:
        slot = (e.segment, e.label)
        if e.kind in ("grant", "mark") and e.token is not None:
            current[slot] = e.token
        elif e.kind == "anomaly":
            current.pop(slot, None)
        elif e.kind == "write":
            want = current.get(slot)
            if want is None:
                unchecked += 1
            elif e.token != want:
                bad.append(
                    f"{e.label}: write by {e.detail} with token {e.token} accepted while the "
                    f"stored token was {want} (segment {e.segment})"
                )
            else:
                checked += 1
    return checked, unchecked, bad


def grants(events: Iterable[TokenEvent], label: str, segments: Iterable[int]) -> list[int]:
    """Tokens granted for ``label`` in the given segments, in order."""
    wanted = set(segments)
    return [
        e.token
        for e in events
        if e.kind == "grant" and e.label == label and e.segment in wanted and e.token is not None
    ]


def stored_token(events: Sequence[TokenEvent], label: str, segment: int) -> int | None:
    """The token stored for ``label`` after the last recorded event of ``segment``."""
    value: int | None = None
    for e in events:
        if e.segment == segment and e.label == label:
            if e.kind in ("grant", "mark"):
                value = e.token
            elif e.kind == "anomaly":
                value = None
    return value


def writing(events: Sequence[TokenEvent], label: str, segment: int) -> bool:
    """In ``segment``, ``label``'s latest event is a write with the stored token: an owner
    holds the newest grant and its reports are being accepted."""
    last = next((e for e in reversed(events) if e.segment == segment and e.label == label), None)
    return (
        last is not None
        and last.kind == "write"
        and last.token == stored_token(events, label, segment)
    )
