"""Prometheus metrics of the ingest service (names listed in services/ingest/README.md)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class HotSeries:
    """One label set's buckets of a ``HotHistogram``: ``observe`` is a bisect and two adds."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class HotHistogram(Collector):
    """A histogram for the per-message hot path, optionally with labels.

    prometheus-client's ``Histogram.observe`` takes locks (~1.5 µs); ingest observes
    once per venue message on the event loop thread. The buckets are plain ints read at
    scrape time (a copy taken under the GIL, so ``+Inf`` always equals the count; the sum
    may trail it by the sample being added). Exposed sample for sample as the library's
    own ``Histogram`` would (tested).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = sorted(buckets)
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], HotSeries] = {}
        if not self._labelnames:
            self._series[()] = HotSeries(self._bounds)
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> HotSeries:
        """The series of these label values (made on first use; keep it, it is cheap)."""
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = HotSeries(self._bounds)
        return series

    def observe(self, value: float) -> None:
        """Observe on the histogram without labels."""
        self._series[()].observe(value)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc)
        bounds = [*map(floatToGoString, self._bounds), "+Inf"]
        for values, series in list(self._series.items()):
            labels = dict(zip(self._labelnames, values, strict=True))
            counts, total = series.counts.copy(), series.sum
            running = 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                family.add_sample(f"{self._name}_bucket", {**labels, "le": bound}, running)
            # As the library's own Histogram: a count always, a sum only without negative
            # buckets (the family helper would drop both when a bucket is negative).
            family.add_sample(f"{self._name}_count", labels, running)
            if self._bounds[0] >= 0:
                family.add_sample(f"{self._name}_sum", labels, total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._doc)


MESSAGES = Counter(
    "context8_ingest_messages_total",
    "Venue messages parsed, by symbol and kind (snapshot, diff, trade, book_ticker, derivative).",
    ["symbol", "kind"],
)
LEVEL_CHANGES = Counter(
    "context8_ingest_level_changes_total",
    "Book level changes applied to the validated book (snapshot levels excluded).",
    ["symbol"],
)
GAPS = Counter("context8_ingest_gaps_total", "Book sequence gaps detected.", ["symbol"])
RESYNCS = Counter(
    "context8_ingest_resyncs_total",
    "Books dropped and resynchronised (gap or crossed).",
    ["symbol"],
)
CROSSED = Counter("context8_ingest_crossed_total", "Books found crossed or locked.", ["symbol"])
COVERED = Counter(
    "context8_ingest_diffs_covered_total",
    "Buffered diffs dropped because the snapshot already covered them.",
    ["symbol"],
)
DUPLICATES = Counter(
    "context8_ingest_diffs_duplicate_total",
    "Diffs at or before the last applied update id (duplicates), skipped.",
    ["symbol"],
)
REJECTIONS = Counter(
    "context8_ingest_parse_rejections_total",
    "Venue lines that could not be used, by reason.",
    ["symbol", "reason"],
)
ENTRIES = Counter(
    "context8_ingest_stream_entries_written_total",
    "Entries appended to the symbol streams, by kind.",
    ["symbol", "kind"],
)
WRITE_ERRORS = Counter(
    "context8_ingest_stream_write_errors_total", "Failed append calls or batches (retried)."
)
PENDING = Gauge("context8_ingest_pending_entries", "Entries waiting to be written to Redis.")
LAG = HotHistogram(
    "context8_ingest_lag_seconds",
    "Receive time minus exchange event time (negative when the receiver's clock is behind).",
    labelnames=["symbol"],
    buckets=(-5.0, -2.0, -1.0, -0.5, -0.1, 0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0),
)
FEED_STATE = Gauge(
    "context8_ingest_feed_state",
    "1 for the symbol's current book state (waiting, ok, degraded, unbuildable, down).",
    ["symbol", "state"],
)
REPLAY_PROGRESS = Gauge(
    "context8_ingest_replay_progress_ratio", "Share of the recorded bytes replayed (0..1)."
)
REPLAY_EVENT_TIME = Gauge(
    "context8_ingest_replay_event_time_seconds",
    "Exchange event time of the last replayed message (Unix seconds).",
    ["symbol"],
)
CHECKPOINTS = Counter(
    "context8_ingest_checkpoints_total",
    "Checkpoint snapshots re-emitted from the book.",
    ["symbol"],
)
CLOCK_SKEW = Gauge(
    "context8_ingest_clock_skew_seconds",
    "Receive time minus exchange event time, exponentially smoothed per symbol "
    "(negative: the receiving clock is behind the venue's).",
    ["symbol"],
)
STREAM_LENGTH = Gauge(
    "context8_ingest_stream_length",
    "Entries in the symbol's Redis Stream (XLEN, sampled every C8_INGEST_STREAM_STATS_INTERVAL_S).",
    ["symbol"],
)
RECONNECTS = Counter(
    "context8_ingest_reconnects_total",
    "Venue WebSocket reconnects (live mode).",
    ["venue"],
)
RESUBSCRIBES = Counter(
    "context8_ingest_resubscribes_total",
    "Book re-subscriptions / fresh snapshot requests after a gap or a reconnect (live mode).",
    ["venue", "symbol"],
)
STALLS = Counter(
    "context8_ingest_stalls_total",
    "Book feeds silent for longer than their expected maximum (C8_INGEST_STALL_AFTER_S).",
    ["symbol"],
)
BOOK_SILENCE = Gauge(
    "context8_ingest_book_silence_seconds",
    "Seconds since the symbol's last book message (live mode, sampled by the stall watchdog).",
    ["symbol"],
)


CONNECT_FAILURES = Counter(
    "context8_ingest_connect_failures_total",
    "Failed attempts to connect to a venue (live; retried with back-off).",
    ["venue"],
)
FEED_OWNED = Gauge(
    "context8_ingest_feed_owned",
    "1 while this process holds the symbol's feed claim and writes it, 0 on standby.",
    ["symbol"],
)
TAKEOVERS = Counter(
    "context8_ingest_takeovers_total",
    "Feeds this process took over from another ingest process (standby -> writer).",
    ["symbol"],
)
BACKFILLED = Counter(
    "context8_ingest_trades_backfilled_total",
    "Trades a standby saw that the previous writer had not written, added on takeover.",
    ["symbol"],
)
CLAIMS_LOST = Counter(
    "context8_ingest_claims_lost_total",
    "Feed claims lost while writing (lapsed and taken by another process).",
    ["symbol"],
)


class FeedMetrics:
    """One feed's labelled children, and the hot-path counts not yet handed to them.

    Per record the shell only bumps plain ints (a ``Counter.inc`` takes a lock and costs
    ~1 µs, several per record); ``flush`` hands them, and the core's own counts, to
    Prometheus. The shell flushes every half second and when a feed ends, so a scrape
    is at most that much behind.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        kinds = ("snapshot", "diff", "trade", "derivative")
        self._messages = {k: MESSAGES.labels(symbol, k) for k in kinds}
        self.event_time = REPLAY_EVENT_TIME.labels(symbol)
        self.skew = CLOCK_SKEW.labels(symbol)
        self.silence = BOOK_SILENCE.labels(symbol)
        self.lag = LAG.labels(symbol)
        #: Counters fed from the core's running totals: (child, name of the total).
        self._totals = [
            (LEVEL_CHANGES.labels(symbol), "level_changes"),
            (GAPS.labels(symbol), "gaps"),
            (RESYNCS.labels(symbol), "resyncs"),
            (CROSSED.labels(symbol), "crossed"),
            (COVERED.labels(symbol), "covered"),
            (DUPLICATES.labels(symbol), "duplicates"),
            (STALLS.labels(symbol), "stalls"),
            (CHECKPOINTS.labels(symbol), "checkpoints"),
            (BACKFILLED.labels(symbol), "backfilled"),
        ]
        self._synced = {name: 0 for _, name in self._totals}
        self.pending = {"snapshot": 0, "diff": 0, "trade": 0, "derivative": 0}
        FEED_STATE.labels(symbol, "waiting").set(1)

    def state(self, old: str, new: str) -> None:
        FEED_STATE.labels(self.symbol, old).set(0)
        FEED_STATE.labels(self.symbol, new).set(1)

    def flush(self, totals: dict[str, int], event_s: float, skew_s: float | None) -> None:
        """Hand the pending message counts and the changed totals to Prometheus."""
        for kind, count in self.pending.items():
            if count:
                self._messages[kind].inc(count)
                self.pending[kind] = 0
        synced = self._synced
        for child, name in self._totals:
            now = totals[name]
            if now != synced[name]:  # most change rarely: one comparison each
                child.inc(now - synced[name])
                synced[name] = now
        if event_s:
            self.event_time.set(event_s)
        if skew_s is not None:
            self.skew.set(skew_s)
