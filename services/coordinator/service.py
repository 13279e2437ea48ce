"""The coordinator shell: elect, read membership and symbols, call HRW, write fenced.

Every tick (and at once on a membership pub/sub message) each coordinator campaigns
for the leader lease; the leader prunes stale nodes, recomputes the assignment with
``shared.hrw.compute_assignment`` and, when it changed, replaces it through
``assignment_write.lua`` (fenced on leader + epoch), which bumps the version and
publishes it on keys.ASSIGNMENT_CHANNEL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.exceptions import RedisError

from services.coordinator.leadership import Leadership
from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.outage import OutageGrace
from services.coordinator.settings import Settings
from shared import assets, keys
from shared.errors import InvalidSymbolError
from shared.hrw import AssignmentPlan, HrwPolicy, compute_assignment, symbols_per_node
from shared.lifecycle import Shutdown
from shared.redis_client import RedisClient, discovered
from shared.scripts import Scripts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Coordinator:
    """One coordinator process (leader or standby)."""

    def __init__(
        self,
        client: RedisClient,
        pubsub_client: RedisClient,
        settings: Settings,
        metrics: CoordinatorMetrics,
        log: Any,
    ) -> None:
        self._client = client
        self._pubsub_client = pubsub_client
        self._settings = settings
        self._scripts = Scripts(client)
        self._metrics = metrics
        self._log = log
        self.node_id = settings.node_id
        self.leadership = Leadership(
            self._scripts,
            settings.node_id,
            settings.coordinator_leader_ttl_ms,
            settings.coordinator_leader_margin_ms,
        )
        self._policy = HrwPolicy(
            settings.coordinator_sticky_bonus, settings.coordinator_min_hold_ms
        )
        self._static_symbols = settings.static_symbols()
        self._tick_s = settings.coordinator_tick_ms / 1000
        self._wake = asyncio.Event()
        #: The assignment in force and when each symbol got its owner (leader only;
        #: None = reload from Redis at the start of a term).
        self._owners: dict[str, str] | None = None
        #: The assignment version our cache corresponds to.
        self._version: int | None = None
        self._assigned_at: dict[str, int] = {}
        self._bad_symbols: set[str] = set()
        self._grace = OutageGrace(
            settings.coordinator_node_ttl_ms, settings.coordinator_tick_ms, time.monotonic()
        )
        #: Set after every completed tick (tests and health checks wait on it).
        self.ticked = asyncio.Event()

    # --- loop -----------------------------------------------------------------------

    async def run(self, shutdown: Shutdown) -> None:
        """Tick until shutdown; then resign leadership at once."""
        listener = asyncio.create_task(self._listen_membership(shutdown), name="membership")
        try:
            while not shutdown.requested:
                started = time.perf_counter()
                # Cleared before the tick: a message arriving during it wakes the next one.
                self._wake.clear()
                try:
                    await self.tick()
                except RedisError as exc:
                    self._metrics.errors.inc()
                    self._log.warning("coordinator_tick_failed", error=repr(exc))
                self._metrics.tick_duration.observe(time.perf_counter() - started)
                self.ticked.set()
                await self._sleep(shutdown)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self._resign()

    async def _sleep(self, shutdown: Shutdown) -> None:
        """Wait for the next tick, a membership message, or shutdown."""
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(shutdown.event.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=self._tick_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _resign(self) -> None:
        was_leader = self.leadership.epoch is not None
        try:
            released = await self.leadership.resign()
        except RedisError as exc:
            self._log.warning("coordinator_resign_failed", error=repr(exc))
            released = False
        self._metrics.is_leader.set(0)
        if was_leader or released:
            self._log.info("coordinator_resigned", released=released)

    async def _listen_membership(self, shutdown: Shutdown) -> None:
        """Wake the loop on every join/leave message; resubscribe after errors."""
        while not shutdown.requested:
            pubsub = None
            try:
                client = await discovered(self._pubsub_client)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(keys.MEMBERSHIP_CHANNEL)
                while not shutdown.requested:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._log.debug("membership_message", data=_text(message["data"]))
                        self._wake.set()
            except RedisError as exc:
                self._log.warning("membership_subscribe_failed", error=repr(exc))
                await shutdown.wait(0.5)
            finally:
                if pubsub is not None:
                    await pubsub.aclose()

    # --- one tick ---------------------------------------------------------------------

    async def tick(self) -> None:
        """One election round and, when leading, one reconcile."""
        term = await self.leadership.campaign()
        self._grace.reached(time.monotonic())
        self._metrics.epoch.set(term.epoch)
        if not term.is_leader:
            if self._owners is not None:
                self._log.warning("coordinator_lost_leadership", epoch=term.epoch)
            self._owners = None
            self._assigned_at = {}
            self._metrics.is_leader.set(0)
            return
        if term.new_term:
            self._owners = None
            self._assigned_at = {}
            self._metrics.leader_changes.inc()
            if term.takeover_s is not None:
                self._metrics.failover.observe(term.takeover_s)
            self._log.info("coordinator_elected", epoch=term.epoch, takeover_s=term.takeover_s)
        self._metrics.is_leader.set(1)
        await self.reconcile(term.epoch)

    async def reconcile(self, epoch: int) -> AssignmentPlan | None:
        """Prune, recompute, and write the assignment if it changed (leader only)."""
        now_ms, pruned, live = await self._scripts(
            "coordinator_prune",
            keys=[keys.NODES, keys.NODE_INFO],
            args=[self._grace.prune_ttl_ms(time.monotonic())],
        )
        nodes = [_text(n) for n in live]
        for node in pruned:
            self._log.info("node_expired", node=_text(node))
        self._metrics.nodes_pruned.inc(len(pruned))
        symbols = await self._symbols()
        version = int(await self._client.get(keys.ASSIGNMENT_VERSION) or 0)
        if self._owners is not None and version != self._version:
            # Someone else changed the assignment under us (a Redis failover that lost
            # our last write, an operator): re-read it rather than trust the cache.
            self._log.warning("assignment_changed_externally", ours=self._version, seen=version)
            self._owners = None
        if self._owners is None:
            raw = await self._client.hgetall(keys.ASSIGNMENT)
            cached = {_text(s): _text(n) for s, n in raw.items()}
            # A new term does not know when symbols got their owners: treat them as
            # assigned now, so the hold applies (dead owners still move at once).
            self._assigned_at = {s: self._assigned_at.get(s, int(now_ms)) for s in cached}
            self._owners, self._version = cached, version
        plan = compute_assignment(
            symbols, nodes, self._owners, self._assigned_at, int(now_ms), self._policy
        )
        self._metrics.live_nodes.set(len(nodes))
        self._metrics.symbols.set(len(symbols))
        if plan.owners == self._owners:
            self._assigned_at = plan.assigned_at
            self._metrics.set_node_symbols(symbols_per_node(plan.owners, nodes))
            return None
        if not self.leadership.is_leader:
            # Our lease may already have expired on the server; do not even try.
            return None
        flat: list[str] = []
        for symbol, node in plan.owners.items():
            flat += (symbol, node)
        ok, value = await self._scripts(
            "assignment_write",
            keys=[
                keys.COORDINATOR_LEADER,
                keys.COORDINATOR_EPOCH,
                keys.ASSIGNMENT,
                keys.ASSIGNMENT_VERSION,
            ],
            args=[self.node_id, epoch, keys.ASSIGNMENT_CHANNEL, *flat],
        )
        if not ok:
            self._metrics.writes_rejected.inc()
            self._log.warning("assignment_write_rejected", epoch=epoch, current_epoch=int(value))
            self.leadership.step_down()
            self._owners = None
            self._metrics.is_leader.set(0)
            return None
        self._owners = dict(plan.owners)
        self._version = int(value)
        self._assigned_at = plan.assigned_at
        self._metrics.assignment_version.set(int(value))
        self._metrics.rebalances.inc()
        self._metrics.symbols_moved.inc(len(plan.moved))
        self._metrics.set_node_symbols(symbols_per_node(plan.owners, nodes))
        self._log.info(
            "assignment_written",
            version=int(value),
            epoch=epoch,
            nodes=len(nodes),
            symbols=len(plan.owners),
            moved=len(plan.moved),
            added=len(plan.added),
            removed=len(plan.removed),
        )
        return plan

    async def _symbols(self) -> set[str]:
        """Fields of keys.SYMBOLS plus C8_COORDINATOR_SYMBOLS; invalid ones skipped once.
        Plus one ``asset:<BASE>`` unit per base with >= 2 registered markets
        (``shared.assets``): the asset report's writer, assigned like a symbol."""
        wanted = set(self._static_symbols)
        registry: dict[str, bytes | str] = {}
        for raw, info in (await self._client.hgetall(keys.SYMBOLS)).items():
            symbol = _text(raw)
            try:
                wanted.add(keys.check_symbol(symbol))
                registry[symbol] = info
            except InvalidSymbolError:
                if symbol not in self._bad_symbols:
                    self._bad_symbols.add(symbol)
                    self._metrics.invalid_symbols.inc()
                    self._log.warning("invalid_symbol_skipped", symbol=symbol)
        wanted.update(keys.asset_unit(asset) for asset in assets.assets(registry))
        return wanted
