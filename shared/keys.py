"""Every Redis key context8 uses, in one place.

Keys that belong to one symbol carry the symbol as a ``{hash tag}`` so that all of a
symbol's keys live in one Redis Cluster slot: every multi-key Lua script touches the
keys of a single symbol only, which keeps the design valid on Redis Cluster.

Fleet-wide keys (membership, assignment, coordinator leadership, publishers) all carry
the ``{fleet}`` tag, so scripts over several of them also stay in one slot; no script
mixes fleet keys with per-symbol keys. Report candidates are partitioned (``candidates``
below): each partition is a stream with a hash tag of its own, so the report path has
no single hot key.
"""

from __future__ import annotations

import re

from redis.crc import key_slot

from shared.errors import InvalidSymbolError

PREFIX = "c8"
FLEET = f"{PREFIX}:{{fleet}}"

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,40}$")


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a valid report symbol (A-Z, 0-9), else raise."""
    if not _SYMBOL_RE.fullmatch(symbol):
        raise InvalidSymbolError(f"invalid symbol {symbol!r}: expected A-Z and 0-9 only")
    return symbol


def _tagged(kind: str, symbol: str) -> str:
    return f"{PREFIX}:{kind}:{{{check_symbol(symbol)}}}"


# --- assets: one base currency across markets (shared/assets.py) -----------------

#: An asset's writer unit is ``asset:<BASE>`` (assignment field, lease/token/report tag).
ASSET_UNIT_PREFIX = "asset:"
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")


def check_asset(asset: str) -> str:
    """Return ``asset`` if it is a valid asset name (A-Z, 0-9, 1-20), else raise."""
    if not _ASSET_RE.fullmatch(asset):
        raise InvalidSymbolError(f"invalid asset {asset!r}: expected 1-20 of A-Z and 0-9")
    return asset


def asset_unit(asset: str) -> str:
    """The writer unit of an asset: ``asset:BTC``."""
    return ASSET_UNIT_PREFIX + check_asset(asset)


def unit_asset(unit: str) -> str | None:
    """The asset of an ``asset:<BASE>`` unit, None for a symbol."""
    if unit.startswith(ASSET_UNIT_PREFIX):
        return check_asset(unit[len(ASSET_UNIT_PREFIX) :])
    return None


def check_unit(unit: str) -> str:
    """Return ``unit`` if it is a symbol or an ``asset:<BASE>`` unit, else raise."""
    if unit_asset(unit) is None:
        check_symbol(unit)
    return unit


def unit_key(kind: str, unit: str) -> str:
    """A per-unit key (``report``, ``token``, ``lease``, ``audit``, ``hist``, ``hist1m``,
    ``updated``) of a symbol or an asset unit: ``c8:report:{asset:BTC}``, one slot each."""
    return f"{PREFIX}:{kind}:{{{check_unit(unit)}}}"


def asset_report(asset: str) -> str:
    """Hash: the published asset report (same fields as a symbol report's hash)."""
    return unit_key("report", asset_unit(asset))


# --- per symbol (one hash slot each) ---------------------------------------------


def stream(symbol: str) -> str:
    """Market-data stream written by ingest, read by calc (wire format: shared/wire.py)."""
    return _tagged("md", symbol)


def checkpoint(symbol: str) -> str:
    """String: stream id of the newest snapshot entry in ``stream(symbol)``.

    A consumer that starts late (or takes a symbol over) reads from here instead of
    from the stream head, so trimming old entries never makes the book unrebuildable.
    """
    return _tagged("ckpt", symbol)


def feed_claim(symbol: str) -> str:
    """String with PX TTL: the node id of the one ingest process writing the symbol."""
    return _tagged("feed", symbol)


def appended(symbol: str) -> str:
    """String: ``"<writer id> <seq>"``, the last entry ingest's writer appended.

    Makes a retried append idempotent: a batch whose reply was lost (the connection
    dropped after Redis ran it) is sent again, and the entries already in the stream
    are skipped instead of written twice.
    """
    return _tagged("appended", symbol)


def report(symbol: str) -> str:
    """Hash: the published report (field ``json``) and its fencing metadata."""
    return _tagged("report", symbol)


def token(symbol: str) -> str:
    """Integer: the symbol's newest fencing token (the Redis clock in µs at its grant)."""
    return _tagged("token", symbol)


def lease(symbol: str) -> str:
    """String with PX TTL: the node id holding the symbol's writer lease."""
    return _tagged("lease", symbol)


def history(symbol: str) -> str:
    """Bounded stream: the report's history at 1 s resolution (written by the fenced
    publish script only, so no stale writer can add to it)."""
    return _tagged("hist", symbol)


def history_coarse(symbol: str) -> str:
    """Bounded stream: the report's history at 1 min resolution (same writer)."""
    return _tagged("hist1m", symbol)


def report_updates(symbol: str) -> str:
    """Sharded pub/sub channel (``SPUBLISH``, same slot as the symbol's keys): the fenced
    publish script announces every accepted report write here; the message is the
    write's ``updated_at`` (wall-clock ms, ASCII decimal)."""
    return _tagged("updated", symbol)


def audit(symbol: str) -> str:
    """Bounded stream: one entry per accepted report write (token, node, event time)."""
    return _tagged("audit", symbol)


# --- fleet-wide -------------------------------------------------------------------

#: Hash symbol -> JSON {"venue":..., "market":...}: every symbol ingest has published.
SYMBOLS = f"{FLEET}:symbols"
#: Sorted set node_id -> last heartbeat (Redis server time, ms).
NODES = f"{FLEET}:nodes"
#: Hash node_id -> JSON node info (started_at, pid, host).
NODE_INFO = f"{FLEET}:nodes:info"
#: Hash symbol -> owning node_id, written by the leading coordinator.
ASSIGNMENT = f"{FLEET}:assignment"
#: Integer: assignment version, INCR on every change.
ASSIGNMENT_VERSION = f"{FLEET}:assignment:version"
#: Pub/sub channel: the new assignment version is published on every change.
ASSIGNMENT_CHANNEL = f"{FLEET}:assignment:changed"
#: Pub/sub channel: membership changes (join/leave) so the coordinator reacts at once.
MEMBERSHIP_CHANNEL = f"{FLEET}:membership:changed"
#: Consumer group of the publishers on every candidate partition stream.
PUBLISHER_GROUP = "publishers"
#: Sorted set publisher node id -> when its presence expires (server ms): how many
#: publishers share the candidate partitions.
PUBLISHERS = f"{FLEET}:publishers"
#: String with PX TTL: the node id of the leading coordinator.
COORDINATOR_LEADER = f"{FLEET}:coordinator:leader"
#: Integer: coordinator leadership epoch, a fencing token granted to every new leader.
COORDINATOR_EPOCH = f"{FLEET}:coordinator:epoch"


# --- report candidates, partitioned ---------------------------------------------------


def candidate_partition(symbol: str, partitions: int) -> int:
    """The candidate partition of ``symbol``: its hash slot's share of ``partitions``
    equal slot ranges (slots 0..16383), so a partition's symbols are neighbours on the
    cluster and each symbol always goes to the same partition (its order is kept).
    An asset unit (``asset:BTC``) is partitioned the same way."""
    return key_slot(check_unit(symbol).encode()) * partitions // 16384


def candidates(partition: int) -> str:
    """Stream of one partition's report candidates (calc -> publishers), own hash tag."""
    return f"{PREFIX}:{{cand{partition}}}:candidates"


def candidates_owner(partition: int) -> str:
    """String with PX TTL: the publisher that reads the partition (same slot as it)."""
    return f"{PREFIX}:{{cand{partition}}}:owner"


def candidates_of(symbol: str, partitions: int) -> str:
    """The candidate stream ``symbol``'s reports go through."""
    return candidates(candidate_partition(symbol, partitions))
