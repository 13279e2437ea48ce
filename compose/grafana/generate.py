"""Generate the Grafana dashboards (one per service) into ./dashboards.

    uv run python compose/grafana/generate.py

The JSON files are committed; tests check them against the metric names the code
really exports, so a renamed metric breaks the build instead of a dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}

Panel = tuple[str, str, list[tuple[str, str]]]  # title, unit, [(expr, legend)]


def _panel(pid: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * ((pid - 1) % 2), "y": 8 * ((pid - 1) // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(service: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": f"context8-{service}",
        "title": title,
        "tags": ["context8", service],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [_panel(i + 1, *p) for i, p in enumerate(panels)],
    }


def q(expr: str) -> str:
    return expr


def rate(metric: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group}(rate({metric}[1m]))"


def p(quantile: float, metric: str, by: str = "") -> str:
    group = f", {by}" if by else ""
    return f"histogram_quantile({quantile}, sum by (le{group}) (rate({metric}_bucket[5m])))"


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


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for service, (title, panels) in DASHBOARDS.items():
        path = OUT / f"{service}.json"
        path.write_text(json.dumps(dashboard(service, title, panels), indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
