"""Prometheus metrics of the calc worker (names listed in services/calc/README.md)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class CalcMetrics:
    """All calc worker metrics, on one registry (tests pass a private one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.entries_applied = Counter(
            "context8_calc_entries_applied_total",
            "Stream entries applied to the core, by kind.",
            ["kind"],
            registry=registry,
        )
        self.decode_errors = Counter(
            "context8_calc_decode_errors_total",
            "Malformed stream entries skipped (wire decode failed).",
            registry=registry,
        )
        self.apply_errors = Counter(
            "context8_calc_apply_errors_total",
            "Entries that raised inside the analytics core (skipped).",
            registry=registry,
        )
        self.sequence_gaps = Counter(
            "context8_calc_sequence_gaps_total",
            "Venue sequence breaks seen (book marked gap until a snap).",
            registry=registry,
        )
        self.cycles = Counter(
            "context8_calc_cycles_total",
            "Cycle boundaries computed, by trigger "
            "(event = clock moved by data, stall = watchdog).",
            ["trigger"],
            registry=registry,
        )
        self.candidates = Counter(
            "context8_calc_candidates_emitted_total",
            "Report candidates written to the candidates stream.",
            registry=registry,
        )
        self.cycles_suppressed = Counter(
            "context8_calc_cycles_suppressed_total",
            "Computed cycles not emitted because this node held no valid lease for the symbol.",
            registry=registry,
        )
        self.cycle_seconds = Histogram(
            "context8_calc_cycle_compute_seconds",
            "Time to compute one cycle's report, by cycle (fast, slow).",
            ["cycle"],
            buckets=(
                0.00005,
                0.0001,
                0.00025,
                0.0005,
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
            ),
            registry=registry,
        )
        self.symbols_assigned = Gauge(
            "context8_calc_symbols_assigned", "Symbols assigned to this node.", registry=registry
        )
        self.symbols_owned = Gauge(
            "context8_calc_symbols_owned",
            "Symbols whose writer lease this node holds.",
            registry=registry,
        )
        self.lease_acquisitions = Counter(
            "context8_calc_lease_acquisitions_total", "Writer leases acquired.", registry=registry
        )
        self.lease_conflicts = Counter(
            "context8_calc_lease_conflicts_total",
            "Lease acquisitions refused because another node still held the lease.",
            registry=registry,
        )
        self.heartbeats = Counter(
            "context8_calc_heartbeats_total", "Membership heartbeats written.", registry=registry
        )
        self.heartbeat_interval = Histogram(
            "context8_calc_heartbeat_interval_seconds",
            "Time between the starts of two heartbeats (must stay well inside the node TTL).",
            buckets=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 2.0),
            registry=registry,
        )
        self.slice_pauses = Counter(
            "context8_calc_slice_pauses_total",
            "Times applying entries yielded the event loop because its slice was used up.",
            registry=registry,
        )
        self.lease_renewals = Counter(
            "context8_calc_lease_renewals_total",
            "Writer lease renewals that succeeded.",
            registry=registry,
        )
        self.lease_losses = Counter(
            "context8_calc_lease_losses_total",
            "Leases lost (renewal refused: expired or taken over).",
            registry=registry,
        )
        self.stream_lag = Gauge(
            "context8_calc_stream_lag_seconds",
            "Wall time since the newest entry applied was appended to its stream (by its id), "
            "when it was applied: how far reading is behind the stream.",
            ["symbol"],
            registry=registry,
        )
        self.data_age = Gauge(
            "context8_calc_data_age_seconds",
            "data_age_ms of the newest report, in seconds.",
            ["symbol"],
            registry=registry,
        )
        self.redis_errors = Counter(
            "context8_calc_redis_errors_total",
            "Redis calls that failed (retried later).",
            ["op"],
            registry=registry,
        )
        self.asset_reports = Counter(
            "context8_calc_asset_reports_total",
            "Asset reports released by the watermark (before the lease check).",
            registry=registry,
        )
        self.asset_stalled = Gauge(
            "context8_calc_asset_stalled_members",
            "Members of an asset reported stalled in its last release.",
            ["asset"],
            registry=registry,
        )
        self.asset_watermark_lag = Gauge(
            "context8_calc_asset_watermark_lag_seconds",
            "Event time from an asset's last released boundary to its most advanced member.",
            ["asset"],
            registry=registry,
        )
        # Children on every cycle's path, looked up once.
        self.cycles_event = self.cycles.labels(trigger="event")
        self.cycles_stall = self.cycles.labels(trigger="stall")
        self.cycle_fast = self.cycle_seconds.labels(cycle="fast")
        self.cycle_slow = self.cycle_seconds.labels(cycle="slow")
