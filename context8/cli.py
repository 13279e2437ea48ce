"""The ``context8`` command."""

from __future__ import annotations

import argparse
import os
from typing import Any

from shared.errors import ConfigError

OBSERVE_HELP = (
    "also start Prometheus (apt prometheus) on loopback, scraping every service and"
    " evaluating compose/prometheus/alerts.yml; its URL is shown"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="context8", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the whole fleet on an embedded redis-server, replaying bundled real data",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run headless for SECONDS, then print each symbol's final report as one JSON line",
    )
    demo.add_argument("--workers", type=int, default=2, help="calc workers (default 2)")
    demo.add_argument(
        "--speed", default="1", help='replay speed: 1 (paced on event time), N, or "max"'
    )
    demo.add_argument("--observe", action="store_true", help=OBSERVE_HELP)

    live = sub.add_parser(
        "live",
        help="run the whole fleet on an embedded redis-server on live venue data",
        description=(
            "Live reports for the venue symbols you name: Binance (USDⓈ-M, COIN-M, spot) and"
            " Bybit (linear, spot) public market data, no API keys. C8_INGEST_VENUE_URLS points"
            " a market at another server (e.g. the venue emulator); C8_INGEST_PRECISIONS gives"
            " precisions of symbols ingest does not know."
        ),
    )
    live.add_argument(
        "symbols",
        metavar="VENUE-MARKET:SYMBOL,...",
        help="e.g. binance-usdm:BTCUSDT,binance-spot:ETHUSDT,bybit-linear:XRPUSDT",
    )
    live.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run headless for SECONDS, then print each symbol's final report as one JSON line",
    )
    live.add_argument("--workers", type=int, default=2, help="calc workers (default 2)")
    live.add_argument(
        "--standby",
        action="store_true",
        help="run a second ingest process for the same symbols (takes over if the first dies)",
    )
    live.add_argument("--observe", action="store_true", help=OBSERVE_HELP)

    report_at = sub.add_parser(
        "report-at",
        help="offline: each symbol's report at an exchange time, from recorded files",
        description=(
            "Replay recorded files through ingest's parsing and calc's analytics (no Redis,"
            " no network) and print one JSON report per symbol: the last fast cycle at or"
            " before --at, then one asset report per base with two or more markets among"
            " the files (asset:BTC). updatedAt is 0 (never published); writer is report-at/1."
        ),
    )
    report_at.add_argument(
        "--at",
        required=True,
        metavar="TIME",
        help="exchange time, ISO-8601 UTC (e.g. 2024-07-19T00:05:00Z; no offset = UTC)",
    )
    report_at.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="recorded files laid out <venue>-<market>/<SYMBOL>/<file> (as for ingest)",
    )

    args = parser.parse_args(argv)
    if args.command == "report-at":
        from context8.report_at import run

        return run(args.at, args.files)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    from context8.console import run_fleet
    from context8.fleet import DEMO_SYMBOLS, FleetConfig

    if args.command == "demo":
        config = FleetConfig(calc_workers=args.workers, speed=args.speed)
        title = f"market reports (bundled Binance USDⓈ-M recording, {args.speed}x)"
        return run_fleet(config, DEMO_SYMBOLS, title, args.duration, observe=args.observe)
    if args.command == "live":
        try:
            config, symbols = live_config(args.symbols, args.workers, args.standby)
        except ConfigError as exc:
            parser.error(str(exc))
        markets = sorted({item.split(":", 1)[0] for item in args.symbols.split(",") if item})
        title = f"live market reports ({', '.join(markets)})"
        return run_fleet(config, symbols, title, args.duration, observe=args.observe)
    parser.error(f"unknown command {args.command}")
    return 2


#: Ingest settings the live command passes on from its own environment.
LIVE_ENV = ("C8_INGEST_VENUE_URLS", "C8_INGEST_PRECISIONS", "C8_INGEST_SYMBOL_MAP")


def live_config(spec: str, workers: int, standby: bool) -> tuple[Any, tuple[str, ...]]:
    """The fleet for ``context8 live`` and the report symbols it publishes.

    Raises ``ConfigError`` with ingest's own message for a bad symbol list or venue URL.
    """
    from context8.fleet import FleetConfig
    from services.ingest.feeds import live_feeds, parse_precisions, parse_symbol_map
    from services.ingest.venues import parse_venue_urls

    env = {name: os.environ[name] for name in LIVE_ENV if os.environ.get(name)}
    feeds = live_feeds(
        spec,
        parse_precisions(env.get("C8_INGEST_PRECISIONS", "")),
        parse_symbol_map(env.get("C8_INGEST_SYMBOL_MAP", "")),
    )
    parse_venue_urls(env.get("C8_INGEST_VENUE_URLS", ""))
    config = FleetConfig(
        calc_workers=workers,
        live_symbols=spec,
        ingest_standbys=1 if standby else 0,
        extra_env=env,
    )
    return config, tuple(feed.symbol for feed in feeds)


if __name__ == "__main__":
    raise SystemExit(main())
