"""The ``context8`` command."""

from __future__ import annotations

import argparse


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

    report_at = sub.add_parser(
        "report-at",
        help="offline: each symbol's report at an exchange time, from recorded files",
        description=(
            "Replay recorded files through ingest's parsing and calc's analytics (no Redis,"
            " no network) and print one JSON report per symbol: the last fast cycle at or"
            " before --at. updatedAt is 0 (never published); writer is report-at/1."
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
    if args.command == "demo":
        from context8.demo import run_demo

        if args.duration is not None and args.duration <= 0:
            parser.error("--duration must be positive")
        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return run_demo(args.duration, calc_workers=args.workers, speed=args.speed)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
