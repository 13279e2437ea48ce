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

    args = parser.parse_args(argv)
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
