"""Prometheus metrics of the calc worker (names listed in services/calc/README.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ENTRIES_APPLIED = Counter(
    "context8_calc_entries_applied_total", "Stream entries applied to the core, by kind.", ["kind"]
)
DECODE_ERRORS = Counter(
    "context8_calc_decode_errors_total", "Malformed stream entries skipped (wire decode failed)."
)
APPLY_ERRORS = Counter(
    "context8_calc_apply_errors_total", "Entries that raised inside the analytics core (skipped)."
)
SEQUENCE_GAPS = Counter(
    "context8_calc_sequence_gaps_total",
    "Venue sequence breaks seen (book marked gap until a snap).",
)
CYCLES = Counter(
    "context8_calc_cycles_total",
    "Cycle boundaries computed, by trigger (event = clock moved by data, stall = watchdog).",
    ["trigger"],
)
CANDIDATES = Counter(
    "context8_calc_candidates_emitted_total", "Report candidates written to the candidates stream."
)
CYCLES_SUPPRESSED = Counter(
    "context8_calc_cycles_suppressed_total",
    "Computed cycles not emitted because this node held no valid lease for the symbol.",
)
CYCLE_SECONDS = Histogram(
    "context8_calc_cycle_compute_seconds",
    "Time to compute one cycle's report, by cycle (fast, slow).",
    ["cycle"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
SYMBOLS_ASSIGNED = Gauge("context8_calc_symbols_assigned", "Symbols assigned to this node.")
SYMBOLS_OWNED = Gauge("context8_calc_symbols_owned", "Symbols whose writer lease this node holds.")
LEASE_ACQUISITIONS = Counter("context8_calc_lease_acquisitions_total", "Writer leases acquired.")
LEASE_CONFLICTS = Counter(
    "context8_calc_lease_conflicts_total",
    "Lease acquisitions refused because another node still held the lease.",
)
HEARTBEATS = Counter("context8_calc_heartbeats_total", "Membership heartbeats written.")
HEARTBEAT_INTERVAL = Histogram(
    "context8_calc_heartbeat_interval_seconds",
    "Time between the starts of two heartbeats (must stay well inside the node TTL).",
    buckets=(0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 2.0),
)
SLICE_PAUSES = Counter(
    "context8_calc_slice_pauses_total",
    "Times applying entries yielded the event loop because its slice was used up.",
)
LEASE_RENEWALS = Counter(
    "context8_calc_lease_renewals_total", "Writer lease renewals that succeeded."
)
LEASE_LOSSES = Counter(
    "context8_calc_lease_losses_total", "Leases lost (renewal refused: expired or taken over)."
)
STREAM_LAG = Gauge(
    "context8_calc_stream_lag_seconds",
    "Wall time since the newest entry applied was appended to its stream (by its id), "
    "when it was applied: how far reading is behind the stream.",
    ["symbol"],
)
DATA_AGE = Gauge(
    "context8_calc_data_age_seconds", "data_age_ms of the newest report, in seconds.", ["symbol"]
)
REDIS_ERRORS = Counter(
    "context8_calc_redis_errors_total", "Redis calls that failed (retried later).", ["op"]
)
ASSET_REPORTS = Counter(
    "context8_calc_asset_reports_total",
    "Asset reports released by the watermark (before the lease check).",
)
ASSET_STALLED = Gauge(
    "context8_calc_asset_stalled_members",
    "Members of an asset reported stalled in its last release.",
    ["asset"],
)
ASSET_WATERMARK_LAG = Gauge(
    "context8_calc_asset_watermark_lag_seconds",
    "Event time from an asset's last released boundary to its most advanced member.",
    ["asset"],
)
