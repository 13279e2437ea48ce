"""Prometheus metrics of the coordinator (prefix ``context8_coordinator_``)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class CoordinatorMetrics:
    """All coordinator metrics, on one registry (tests pass a private one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        p = "context8_coordinator_"
        self.is_leader = Gauge(
            p + "is_leader", "1 while this coordinator leads.", registry=registry
        )
        self.epoch = Gauge(
            p + "epoch", "Leadership epoch in force as seen here.", registry=registry
        )
        self.live_nodes = Gauge(
            p + "live_nodes", "Live calc nodes (leader's view).", registry=registry
        )
        self.symbols = Gauge(p + "symbols", "Symbols to assign (leader's view).", registry=registry)
        self.node_symbols = Gauge(
            p + "node_symbols", "Symbols assigned to each calc node.", ["node"], registry=registry
        )
        self.assignment_version = Gauge(
            p + "assignment_version", "Last assignment version written.", registry=registry
        )
        self.rebalances = Counter(
            p + "rebalances", "Assignment changes written.", registry=registry
        )
        self.symbols_moved = Counter(
            p + "symbols_moved", "Symbols moved from one node to another.", registry=registry
        )
        self.nodes_pruned = Counter(
            p + "nodes_pruned", "Calc nodes dropped for a stale heartbeat.", registry=registry
        )
        self.leader_changes = Counter(
            p + "leader_changes", "Terms this coordinator started as leader.", registry=registry
        )
        self.writes_rejected = Counter(
            p + "assignment_writes_rejected",
            "Assignment writes refused by the epoch fence (deposed leader).",
            registry=registry,
        )
        self.errors = Counter(
            p + "errors", "Ticks that failed on a Redis error.", registry=registry
        )
        self.invalid_symbols = Counter(
            p + "invalid_symbols", "Registered symbols skipped as invalid.", registry=registry
        )
        self.tick_duration = Histogram(
            p + "tick_duration_seconds",
            "Wall time of one election + reconcile tick.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.failover = Histogram(
            p + "failover_seconds",
            "Seconds from last seeing another leader to taking over (standby side).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0),
            registry=registry,
        )
        self._known_nodes: set[str] = set()

    def set_node_symbols(self, counts: Mapping[str, int]) -> None:
        """Publish per-node counts; drop series of nodes that are gone."""
        for node in self._known_nodes - counts.keys():
            self.node_symbols.remove(node)
        for node, count in counts.items():
            self.node_symbols.labels(node=node).set(count)
        self._known_nodes = set(counts)
