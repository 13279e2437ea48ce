"""Prometheus metrics of the publisher (prefix ``context8_publisher_``)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from services.publisher.core import REASONS


class PublisherMetrics:
    """All publisher metrics, on one registry (tests pass a private one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        p = "context8_publisher_"
        self.accepted = Counter(p + "accepted", "Reports written.", registry=registry)
        self.rejected = Counter(
            p + "rejected", "Candidates not written, by reason.", ["reason"], registry=registry
        )
        for reason in REASONS:
            self.rejected.labels(reason=reason)
        self.errors = Counter(
            p + "errors", "Redis errors (entries left pending for a retry).", registry=registry
        )
        self.claimed = Counter(
            p + "claimed",
            "Pending entries claimed on taking a partition over (a dead reader's or a retry).",
            registry=registry,
        )
        self.partitions = Gauge(
            p + "partitions", "Candidate partitions this publisher reads.", registry=registry
        )
        self.takeovers = Counter(
            p + "partition_takeovers",
            "Candidate partitions this publisher started reading.",
            registry=registry,
        )
        self.latency = Histogram(
            p + "publish_latency_seconds",
            "Wall time from reading a candidate to its fenced write completing.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self.batch_size = Histogram(
            p + "batch_size",
            "Candidates per processed batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.history_rows = Counter(
            p + "history_rows",
            "History rows appended with accepted writes (1 s and 1 min streams together).",
            registry=registry,
        )
        self.history_errors = Counter(
            p + "history_errors",
            "Accepted writes whose history append failed (a stream ahead of the report).",
            registry=registry,
        )
        self.pending = Gauge(
            p + "pending",
            "Entries delivered to the group but not yet acked, per partition this publisher reads.",
            ["partition"],
            registry=registry,
        )
