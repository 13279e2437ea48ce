"""The Grafana dashboards as code, built with Grafana's own SDK (grafana-foundation-sdk).

    uv run python compose/grafana/generate.py

writes one dashboard per service plus a fleet overview into ./dashboards, which compose
provisions (provisioning/dashboards/context8.yml). The JSON files are committed:
tests/deploy/test_dashboards_generated.py regenerates them in memory and fails on drift,
and tests/deploy/test_compose_and_dashboards.py checks every query's metric names
against the metrics the code really registers.

The panels are plain data (title, unit, [(expr, legend)]); only `build_panel` and
`build_dashboard` touch the SDK's builders.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dashboard_m
from grafana_foundation_sdk.models import prometheus as prometheus_m

OUT = Path(__file__).resolve().parent / "dashboards"
DS = dashboard_m.DataSourceRef(type_val="prometheus", uid="prometheus")  # provisioning uid
# Reports older than this are stale (the Context8StaleReports alert's threshold).
STALE_AFTER_S = 5

Panel = tuple[str, str, list[tuple[str, str]]]  # title, unit, [(expr, legend)]
Kind = Literal["timeseries", "stat", "heatmap", "heatmap_calculated"]


@dataclass(frozen=True)
class PanelSpec:
    """A panel as plain data. heatmap: the queries return histogram buckets (by le);
    heatmap_calculated: Grafana buckets the plain series' values itself."""

    title: str
    unit: str
    targets: list[tuple[str, str]]
    kind: Kind = "timeseries"
    description: str = ""
    width: int = 12


def q(expr: str) -> str:
    return expr


def rate(metric: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group}(rate({metric}[1m]))"


def p(quantile: float, metric: str, by: str = "") -> str:
    group = f", {by}" if by else ""
    return f"histogram_quantile({quantile}, sum by (le{group}) (rate({metric}_bucket[5m])))"


def count0(expr: str) -> str:
    """Count the series of `expr`, 0 (not "no data") when there are none."""
    return f"count({expr}) or vector(0)"


DASHBOARDS: dict[str, tuple[str, list[Panel]]] = {
    "ingest": (
        "context8 / ingest",
        [
            ("Venue messages per second", "ops",
             [(rate("context8_ingest_messages_total", "symbol, kind"), "{{symbol}} {{kind}}")]),
            ("Level changes per second", "ops",
             [(rate("context8_ingest_level_changes_total", "symbol"), "{{symbol}}")]),
            ("Gaps, resyncs, crossed books, stalls (per minute)", "short", [
                (rate("context8_ingest_gaps_total", "symbol") + " * 60", "gaps {{symbol}}"),
                (rate("context8_ingest_resyncs_total", "symbol") + " * 60", "resyncs {{symbol}}"),
                (rate("context8_ingest_crossed_total", "symbol") + " * 60", "crossed {{symbol}}"),
                (rate("context8_ingest_stalls_total", "symbol") + " * 60", "stalls {{symbol}}"),
            ]),
            ("Book feed silence (live)", "s",
             [(q("max by (symbol) (context8_ingest_book_silence_seconds)"), "{{symbol}}")]),
            ("Parse rejections per second", "ops",
             [(rate("context8_ingest_parse_rejections_total", "reason"), "{{reason}}")]),
            ("Ingest lag p50 / p99 per symbol (receive - exchange time)", "s", [
                (p(0.5, "context8_ingest_lag_seconds", "symbol"), "p50 {{symbol}}"),
                (p(0.99, "context8_ingest_lag_seconds", "symbol"), "p99 {{symbol}}"),
            ]),
            ("Feed state per symbol", "short",
             [(q("max by (symbol, state) (context8_ingest_feed_state) == 1"),
               "{{symbol}} {{state}}")]),
            ("Stream entries written per second", "ops",
             [(rate("context8_ingest_stream_entries_written_total", "symbol"), "{{symbol}}")]),
            ("Replay progress", "percentunit",
             [(q("max(context8_ingest_replay_progress_ratio)"), "progress")]),
            ("Clock skew (receive - exchange time, smoothed)", "s",
             [(q("max by (symbol) (context8_ingest_clock_skew_seconds)"), "{{symbol}}")]),
            ("Stream length (entries)", "short",
             [(q("max by (symbol) (context8_ingest_stream_length)"), "{{symbol}}")]),
            ("Venue reconnects and book resubscribes per minute", "short", [
                (rate("context8_ingest_reconnects_total", "venue") + " * 60",
                 "reconnects {{venue}}"),
                (rate("context8_ingest_resubscribes_total", "symbol") + " * 60",
                 "resubscribes {{symbol}}"),
            ]),
            ("Failed venue connects per minute (venue unreachable)", "short",
             [(rate("context8_ingest_connect_failures_total", "venue") + " * 60", "{{venue}}")]),
            ("Writer of each symbol (1 = writes, 0 = hot standby)", "short",
             [(q("max by (symbol, instance) (context8_ingest_feed_owned)"),
               "{{symbol}} {{instance}}")]),
            ("Takeovers, claims lost, trades backfilled (per minute)", "short", [
                (rate("context8_ingest_takeovers_total", "symbol") + " * 60",
                 "takeovers {{symbol}}"),
                (rate("context8_ingest_claims_lost_total", "symbol") + " * 60",
                 "claims lost {{symbol}}"),
                (rate("context8_ingest_trades_backfilled_total", "symbol") + " * 60",
                 "backfilled {{symbol}}"),
            ]),
        ],
    ),
    "calc": (
        "context8 / calc workers",
        [
            ("Symbols owned per worker", "short",
             [(q("sum by (instance) (context8_calc_symbols_owned)"), "{{instance}}")]),
            ("Cycles per second, by trigger", "ops",
             [(rate("context8_calc_cycles_total", "trigger"), "{{trigger}}")]),
            ("Cycle compute p50 / p99", "s", [
                (p(0.5, "context8_calc_cycle_compute_seconds", "cycle"), "p50 {{cycle}}"),
                (p(0.99, "context8_calc_cycle_compute_seconds", "cycle"), "p99 {{cycle}}"),
            ]),
            ("Data age in reports", "s",
             [(q("max by (symbol) (context8_calc_data_age_seconds)"), "{{symbol}}")]),
            ("Stream lag", "s",
             [(q("max by (symbol) (context8_calc_stream_lag_seconds)"), "{{symbol}}")]),
            ("Lease acquisitions / renewals / losses / conflicts per second", "ops", [
                (rate("context8_calc_lease_acquisitions_total"), "acquired"),
                (rate("context8_calc_lease_renewals_total"), "renewed"),
                (rate("context8_calc_lease_losses_total"), "lost"),
                (rate("context8_calc_lease_conflicts_total"), "conflicts"),
            ]),
            ("Heartbeats per second, by worker", "ops",
             [(rate("context8_calc_heartbeats_total", "instance"), "{{instance}}")]),
            ("Decode errors and sequence gaps per second", "ops", [
                (rate("context8_calc_decode_errors_total"), "decode errors"),
                (rate("context8_calc_sequence_gaps_total"), "sequence gaps"),
            ]),
            ("Candidates emitted per second", "ops",
             [(rate("context8_calc_candidates_emitted_total", "instance"), "{{instance}}")]),
        ],
    ),
    "coordinator": (
        "context8 / coordinator",
        [
            ("Leader and epoch", "short", [
                (q("max by (instance) (context8_coordinator_is_leader)"), "leader {{instance}}"),
                (q("max(context8_coordinator_epoch)"), "epoch"),
            ]),
            ("Live calc nodes and symbols", "short", [
                (q("max(context8_coordinator_live_nodes)"), "live nodes"),
                (q("max(context8_coordinator_symbols)"), "symbols"),
            ]),
            ("Symbols per node", "short",
             [(q("max by (node) (context8_coordinator_node_symbols)"), "{{node}}")]),
            ("Rebalances and symbols moved per minute", "short", [
                (rate("context8_coordinator_rebalances_total") + " * 60", "rebalances"),
                (rate("context8_coordinator_symbols_moved_total") + " * 60", "symbols moved"),
                (rate("context8_coordinator_nodes_pruned_total") + " * 60", "nodes pruned"),
            ]),
            ("Leader failover time p50 / p99", "s", [
                (p(0.5, "context8_coordinator_failover_seconds"), "p50"),
                (p(0.99, "context8_coordinator_failover_seconds"), "p99"),
            ]),
            ("Deposed-leader writes rejected and errors", "short", [
                (rate("context8_coordinator_assignment_writes_rejected_total") + " * 60",
                 "rejected writes / min"),
                (rate("context8_coordinator_errors_total") + " * 60", "errors / min"),
            ]),
        ],
    ),
    "publisher": (
        "context8 / publisher",
        [
            ("Reports accepted per second", "ops",
             [(rate("context8_publisher_accepted_total"), "accepted")]),
            ("Candidates rejected per second, by reason", "ops",
             [(rate("context8_publisher_rejected_total", "reason"), "{{reason}}")]),
            ("Publish latency p50 / p99", "s", [
                (p(0.5, "context8_publisher_publish_latency_seconds"), "p50"),
                (p(0.99, "context8_publisher_publish_latency_seconds"), "p99"),
            ]),
            ("Pending candidates", "short",
             [(q("sum(context8_publisher_pending)"), "pending")]),
            ("Redis errors and claimed entries per second", "ops", [
                (rate("context8_publisher_errors_total"), "errors"),
                (rate("context8_publisher_claimed_total"), "claimed"),
            ]),
            ("Candidate partitions per publisher, takeovers per minute", "short", [
                (q("max by (instance) (context8_publisher_partitions)"), "{{instance}}"),
                (rate("context8_publisher_partition_takeovers_total", "instance") + " * 60",
                 "takeovers {{instance}}"),
            ]),
        ],
    ),
    "mcp": (
        "context8 / mcp",
        [
            ("Requests per second", "reqps",
             [(rate("context8_mcp_requests_total", "transport, endpoint, status"),
               "{{transport}} {{endpoint}} {{status}}")]),
            ("Request latency p50 / p99", "s", [
                (p(0.5, "context8_mcp_request_duration_seconds"), "p50"),
                (p(0.99, "context8_mcp_request_duration_seconds"), "p99"),
            ]),
            ("Reports served by status", "ops",
             [(rate("context8_mcp_reports_served_total", "status"), "{{status}}")]),
            ("Redis errors per second", "ops",
             [(rate("context8_mcp_redis_errors_total"), "errors")]),
        ],
    ),
}

_AGE = "max by (symbol) (context8_calc_data_age_seconds)"

FLEET: tuple[str, list[PanelSpec]] = (
    "context8 / fleet overview",
    [
        PanelSpec(
            f"Symbols with fresh / stale reports (data age <= / > {STALE_AFTER_S} s)", "short",
            [(count0(f"{_AGE} <= {STALE_AFTER_S}"), "fresh"),
             (count0(f"{_AGE} > {STALE_AFTER_S}"), "stale")],
            kind="stat", width=8,
            description="From the calc writers' context8_calc_data_age_seconds; a symbol "
            "without a writer has no series (see Symbols without a writer).",
        ),
        PanelSpec(
            "Symbols by book feed state (ingest)", "short",
            [(q("count by (state) (max by (symbol, state) (context8_ingest_feed_state) == 1)"),
              "{{state}}")],
            kind="stat", width=8,
            description="ok = fresh feed; degraded, down, waiting, unbuildable otherwise.",
        ),
        PanelSpec(
            "Symbols without a calc writer", "short",
            [(q("sum(context8_coordinator_symbols and on (instance) "
                "(context8_coordinator_is_leader == 1)) - (sum(context8_calc_symbols_owned) "
                "or vector(0))"), "without writer")],
            kind="stat", width=8,
            description="Symbols the leading coordinator assigns minus the writer leases "
            "calc workers hold (the Context8SymbolWithoutWriter alert).",
        ),
        PanelSpec(
            "Reports served by status (read API: ok = fresh, degraded, down)", "ops",
            [(rate("context8_mcp_reports_served_total", "status"), "{{status}}")],
        ),
        PanelSpec(
            "Data age per symbol", "s",
            [(q(_AGE), "{{symbol}}")],
        ),
        PanelSpec(
            "Data age across symbols (heatmap)", "s",
            [(q(_AGE), "{{symbol}}")],
            kind="heatmap_calculated",
            description="Grafana buckets the per-symbol data age gauges (there is no data "
            "age histogram): each column shows how many symbols had which age.",
        ),
        PanelSpec(
            "Served report age, write to serve (heatmap)", "s",
            [(q("sum by (le) (rate(context8_mcp_served_report_write_age_seconds_bucket[1m]))"),
              "{{le}}")],
            kind="heatmap",
            description="context8_mcp_served_report_write_age_seconds: time since the "
            "publisher wrote each report the read API served.",
        ),
        PanelSpec(
            "Failovers: writer changes and moves per minute", "short",
            [(rate("context8_coordinator_symbols_moved_total") + " * 60",
              "symbols moved (coordinator)"),
             (rate("context8_calc_lease_acquisitions_total") + " * 60",
              "calc writer leases acquired"),
             (rate("context8_calc_lease_losses_total") + " * 60", "calc writer leases lost"),
             (rate("context8_ingest_takeovers_total") + " * 60", "ingest feed takeovers"),
             (rate("context8_publisher_partition_takeovers_total") + " * 60",
              "publisher partition takeovers"),
             (rate("context8_coordinator_leader_changes_total") + " * 60",
              "coordinator leader changes")],
        ),
        PanelSpec(
            "Redis operations by service (from service counters)", "ops",
            [(rate("context8_ingest_stream_entries_written_total"),
              "ingest stream entries (XADD)"),
             (rate("context8_calc_candidates_emitted_total"), "calc candidates (XADD)"),
             (rate("context8_calc_heartbeats_total") + " + "
              + rate("context8_calc_lease_renewals_total"), "calc heartbeats + lease renewals"),
             (rate("context8_publisher_accepted_total"), "publisher report writes (Lua)"),
             (rate("context8_publisher_history_rows_total"), "publisher history rows"),
             (rate("context8_mcp_reports_served_total"), "mcp report reads")],
            description="No redis_exporter runs, so these are the services' own counts of "
            "what they write and read, not Redis' command stats.",
        ),
        PanelSpec(
            "Redis errors by service per second", "ops",
            [(rate("context8_ingest_stream_write_errors_total"), "ingest"),
             (rate("context8_calc_redis_errors_total", "op"), "calc {{op}}"),
             (rate("context8_coordinator_errors_total"), "coordinator"),
             (rate("context8_publisher_errors_total"), "publisher"),
             (rate("context8_mcp_redis_errors_total"), "mcp")],
        ),
    ],
)


def _spec(panel: Panel | PanelSpec) -> PanelSpec:
    return panel if isinstance(panel, PanelSpec) else PanelSpec(*panel)


def _query(ref: int, expr: str, legend: str, kind: Kind) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery().ref_id(chr(ord("A") + ref)).expr(expr).legend_format(legend)
        .datasource(DS)
    )
    if kind == "heatmap":
        query = query.format(prometheus_m.PromQueryFormat.HEATMAP)
    return query


def build_panel(pid: int, spec: PanelSpec) -> Any:
    """The SDK builder of one panel (its type depends on spec.kind)."""
    panel: Any
    if spec.kind == "timeseries":
        panel = timeseries.Panel().legend(
            common_b.VizLegendOptions().show_legend(True)
            .display_mode(common_m.LegendDisplayMode.TABLE)
            .placement(common_m.LegendPlacement.BOTTOM)
        )
    elif spec.kind == "stat":
        panel = (
            stat.Panel().reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(common_m.BigValueGraphMode.AREA)
        )
    else:
        panel = (
            heatmap.Panel().calculate(spec.kind == "heatmap_calculated")
            .y_axis(heatmap.YAxisConfig().unit(spec.unit))
        )
    panel = (
        panel.id(pid).title(spec.title).unit(spec.unit).datasource(DS)
        .height(8).span(spec.width)
    )
    if spec.description:
        panel = panel.description(spec.description)
    for ref, (expr, legend) in enumerate(spec.targets):
        panel = panel.with_target(_query(ref, expr, legend, spec.kind))
    return panel


def build_dashboard(name: str, title: str, panels: Sequence[Panel | PanelSpec]) -> Any:
    """The SDK model of one dashboard (uid context8-<name>)."""
    builder = (
        dashboard_b.Dashboard(title).uid(f"context8-{name}").tags(["context8", name])
        .timezone("utc").refresh("5s").time("now-30m", "now").version(1).readonly()
    )
    for pid, panel in enumerate(panels, start=1):
        builder = builder.with_panel(build_panel(pid, _spec(panel)))
    return builder.build()


def render(dashboard: Any) -> str:
    return json.dumps(dashboard, cls=JSONEncoder, indent=2) + "\n"


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard, as committed in ./dashboards."""
    boards: dict[str, tuple[str, Sequence[Panel | PanelSpec]]] = {**DASHBOARDS, "fleet": FLEET}
    return {
        f"{name}.json": render(build_dashboard(name, title, panels))
        for name, (title, panels) in boards.items()
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        path = OUT / name
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
