"""Least-privilege Redis ACL users, one per service: the single source of the rules.

Each service gets a list of ``Grant``s; each grant becomes one ACL *selector* (Redis 7):
a set of commands allowed only on a set of key patterns and pub/sub channels. A command
is allowed when one selector allows it together with every key and channel it names,
so "calc may XADD candidates" does not also mean "calc may XADD a market-data stream".

Lua scripts: ``EVALSHA`` declares its KEYS, and Redis checks them as read-write keys;
every ``redis.call`` inside the script is checked again against the caller's user. So a
script's user needs ``EVALSHA`` on all the keys it declares plus the commands the script
runs, and a script cannot do more than its caller. Redis cannot tell a call made inside a
script from a direct one: the publisher's user may HSET reports (its fenced_publish.lua
does); no other user may.

Pure: ``rules`` / ``acl_file`` produce text; the embedded server (``context8/fleet.py``),
compose and the tests apply it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from shared import keys

SERVICES: tuple[str, ...] = ("ingest", "calc", "coordinator", "publisher", "mcp")
#: The operator's user of the embedded server (full rights): tests and tools.
ADMIN_USER = "c8-admin"


def _sym(kind: str) -> str:
    """Glob of a per-symbol key kind (``c8:<kind>:{*}``), as ``keys._tagged`` builds it."""
    return f"{keys.PREFIX}:{kind}:{{*}}"


# Per symbol.
MD = _sym("md")
CKPT = _sym("ckpt")
FEED = _sym("feed")
APPENDED = _sym("appended")
REPORT = _sym("report")
TOKEN = _sym("token")
LEASE = _sym("lease")
HIST = _sym("hist")
HIST1M = _sym("hist1m")
AUDIT = _sym("audit")
UPDATED = _sym("updated")  # sharded channel, also declared as KEYS[6] of fenced_publish
# Candidate partitions.
CANDIDATES = f"{keys.PREFIX}:{{cand*}}:candidates"
CAND_OWNER = f"{keys.PREFIX}:{{cand*}}:owner"

#: Every key pattern a service's user may name, with the key it must match (tests).
PATTERN_EXAMPLES: dict[str, str] = {
    MD: keys.stream("BTCUSDT"),
    CKPT: keys.checkpoint("BTCUSDT"),
    FEED: keys.feed_claim("BTCUSDT"),
    APPENDED: keys.appended("BTCUSDT"),
    REPORT: keys.report("BTCUSDT"),
    TOKEN: keys.token("BTCUSDT"),
    LEASE: keys.lease("BTCUSDT"),
    HIST: keys.history("BTCUSDT"),
    HIST1M: keys.history_coarse("BTCUSDT"),
    AUDIT: keys.audit("BTCUSDT"),
    UPDATED: keys.report_updates("BTCUSDT"),
    CANDIDATES: keys.candidates(3),
    CAND_OWNER: keys.candidates_owner(3),
}


@dataclass(frozen=True)
class Grant:
    """Commands allowed on these keys and channels only (one ACL selector).

    ``read`` keys are granted read-only (``%R~``), ``keys`` read-write (``~``).
    """

    why: str
    commands: tuple[str, ...]
    keys: tuple[str, ...] = ()
    read: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()

    def selector(self) -> str:
        parts = [f"+{c}" for c in self.commands]
        parts += [f"~{k}" for k in self.keys] + [f"%R~{k}" for k in self.read]
        parts += [f"&{c}" for c in self.channels]
        return "(" + " ".join(parts) + ")"


#: What every user may run (no keys): connection set-up, the cluster client's slot map
#: and command table, loading the project's scripts after a restart (NOSCRIPT), and the
#: server clock. (redis-py's CLIENT SETINFO is left out: it ignores the refusal.)
BASE_COMMANDS: tuple[str, ...] = (
    "ping",
    "select",
    "readonly",
    "readwrite",
    "asking",
    "command",
    "cluster|slots",
    "cluster|shards",
    "script|load",
    "time",
)

GRANTS: dict[str, tuple[Grant, ...]] = {
    "ingest": (
        Grant(
            "stream_append.lua; feed claim renew/release scripts",
            ("evalsha",),
            keys=(MD, CKPT, APPENDED, FEED),
        ),
        Grant("append, stream length, resume point", ("xadd", "xlen", "xrevrange"), keys=(MD,)),
        Grant("checkpoint and last-appended pointers", ("get", "set"), keys=(CKPT, APPENDED)),
        Grant("feed claims", ("get", "set", "pexpire", "del"), keys=(FEED,)),
        Grant("publish its symbols", ("hset",), keys=(keys.SYMBOLS,)),
    ),
    "calc": (
        Grant(
            "writer lease scripts (lease_acquire/renew/release)", ("evalsha",), keys=(LEASE, TOKEN)
        ),
        Grant(
            "inside the lease scripts: lease and token grant",
            ("get", "set", "pexpire", "del"),
            keys=(LEASE, TOKEN),
        ),
        Grant(
            "membership scripts (heartbeat, leave)",
            ("evalsha", "zadd", "zrem", "hset", "hdel"),
            keys=(keys.NODES, keys.NODE_INFO),
        ),
        Grant("heartbeat/leave announce", ("publish",), channels=(keys.MEMBERSHIP_CHANNEL,)),
        Grant("read market data and its checkpoint", ("xread", "xrange", "get"), read=(MD, CKPT)),
        Grant(
            "read the assignment, symbols and the stored report's event time",
            ("get", "hget", "hgetall"),
            read=(keys.ASSIGNMENT, keys.ASSIGNMENT_VERSION, keys.SYMBOLS, REPORT),
        ),
        Grant(
            "assignment wake-ups", ("subscribe", "unsubscribe"), channels=(keys.ASSIGNMENT_CHANNEL,)
        ),
        Grant("emit report candidates", ("xadd",), keys=(CANDIDATES,)),
    ),
    "coordinator": (
        Grant(
            "leader lease and assignment_write scripts",
            ("evalsha",),
            keys=(
                keys.COORDINATOR_LEADER,
                keys.COORDINATOR_EPOCH,
                keys.ASSIGNMENT,
                keys.ASSIGNMENT_VERSION,
            ),
        ),
        Grant(
            "inside the leader lease scripts",
            ("get", "set", "pexpire", "del"),
            keys=(keys.COORDINATOR_LEADER, keys.COORDINATOR_EPOCH),
        ),
        Grant(
            "inside assignment_write; reads of the assignment",
            ("get", "del", "hset", "incr", "hgetall"),
            keys=(keys.ASSIGNMENT, keys.ASSIGNMENT_VERSION),
        ),
        Grant("announce a new assignment", ("publish",), channels=(keys.ASSIGNMENT_CHANNEL,)),
        Grant(
            "coordinator_prune.lua",
            ("evalsha", "zrangebyscore", "zrange", "zrem", "hdel"),
            keys=(keys.NODES, keys.NODE_INFO),
        ),
        Grant("symbols to assign", ("hkeys", "hgetall"), read=(keys.SYMBOLS,)),
        Grant(
            "membership wake-ups", ("subscribe", "unsubscribe"), channels=(keys.MEMBERSHIP_CHANNEL,)
        ),
    ),
    "publisher": (
        Grant(
            "fenced_publish.lua (declares token, report, audit, history, channel)",
            ("evalsha",),
            keys=(TOKEN, REPORT, AUDIT, HIST, HIST1M, UPDATED),
        ),
        Grant("inside fenced_publish: the current token, read only", ("get",), read=(TOKEN,)),
        Grant("inside fenced_publish: the report", ("hget", "hset"), keys=(REPORT,)),
        Grant(
            "inside fenced_publish: audit and history rows", ("xadd",), keys=(AUDIT, HIST, HIST1M)
        ),
        Grant("inside fenced_publish: the update announcement", ("spublish",), channels=(UPDATED,)),
        Grant(
            "partition leases and presence scripts",
            ("evalsha",),
            keys=(keys.PUBLISHERS, CAND_OWNER),
        ),
        Grant("presence", ("zadd", "zrem", "zremrangebyscore", "zcard"), keys=(keys.PUBLISHERS,)),
        Grant("partition leases", ("get", "set", "pexpire", "del"), keys=(CAND_OWNER,)),
        Grant(
            "consume candidates",
            ("xgroup|create", "xgroup|delconsumer", "xreadgroup", "xautoclaim", "xpending", "xack"),
            keys=(CANDIDATES,),
        ),
    ),
    "mcp": (
        Grant(
            "reports and symbols, read only",
            ("hget", "hmget", "hgetall"),
            read=(REPORT, keys.SYMBOLS),
        ),
        Grant("report history, read only", ("xrevrange",), read=(HIST, HIST1M)),
        Grant("list report keys", ("scan",)),
        Grant("report update push", ("ssubscribe", "sunsubscribe"), channels=(UPDATED,)),
    ),
}


def password_hash(password: str) -> str:
    """The ``#<sha256>`` form of a password: ACL files never hold it in clear."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def rules(service: str, password: str) -> list[str]:
    """``ACL SETUSER <service> <rules...>`` arguments: nothing but the service's grants."""
    if service not in GRANTS:
        raise KeyError(f"no ACL user for service {service!r}; known: {', '.join(SERVICES)}")
    base = [f"+{c}" for c in BASE_COMMANDS]
    selectors = [g.selector() for g in GRANTS[service]]
    return ["reset", "on", password_hash(password), "-@all", *base, *selectors]


def admin_rules(password: str) -> list[str]:
    """The operator's user: everything (tests, tools; never given to a service)."""
    return ["reset", "on", password_hash(password), "~*", "&*", "+@all"]


def acl_file(passwords: Mapping[str, str], admin_password: str | None = None) -> str:
    """An ACL file (``aclfile``): the default user off, one user per service in
    ``passwords``, and the admin user when ``admin_password`` is given."""
    # Off: nobody logs in as it (no password either). It keeps every right because Redis
    # 7.0 replays an AOF's MULTI/EXEC blocks (scripts' effects) under the default user's
    # rules: without them a restart drops those writes ("NOPERM ... AOF-loading-client").
    lines = ["user default reset off ~* &* +@all"]
    if admin_password is not None:
        lines.append(" ".join(["user", ADMIN_USER, *admin_rules(admin_password)]))
    for service in SERVICES:
        if service in passwords:
            lines.append(" ".join(["user", service, *rules(service, passwords[service])]))
    return "\n".join(lines) + "\n"


def table() -> str:
    """The ACL table as Markdown (service, commands, keys/channels, why): docs/redis-acl.md."""

    def cell(items: list[str]) -> str:
        return " ".join(items).replace("|", "\\|")  # subcommands: xgroup|create

    rows = [
        "| service | commands | keys (`~`; `%R~` read only) and channels (`&`) | why |",
        "|---|---|---|---|",
        f"| every service | {cell(list(BASE_COMMANDS))} | (no keys) | connection, cluster "
        "slot map and command table, loading scripts after NOSCRIPT, server clock |",
    ]
    for service in SERVICES:
        for g in GRANTS[service]:
            where = [f"`~{k}`" for k in g.keys] + [f"`%R~{k}`" for k in g.read]
            where += [f"`&{c}`" for c in g.channels]
            rows.append(f"| {service} | {cell(list(g.commands))} | {cell(where)} | {g.why} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.acl OUT``: write the ACL file for compose from the environment
    (``C8_REDIS_ADMIN_PASSWORD`` and ``C8_REDIS_PASSWORD_<SERVICE>`` for each service)."""
    import os
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m shared.acl OUT_FILE", file=sys.stderr)
        return 2
    names = {s: f"C8_REDIS_PASSWORD_{s.upper()}" for s in SERVICES}
    names["admin"] = "C8_REDIS_ADMIN_PASSWORD"
    missing = [var for var in names.values() if not os.environ.get(var)]
    if missing:
        print(f"set {', '.join(missing)} (one password per Redis user)", file=sys.stderr)
        return 2
    passwords = {s: os.environ[names[s]] for s in SERVICES}
    Path(args[0]).write_text(acl_file(passwords, os.environ[names["admin"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
