"""``python -m context8.emulator``: serve recorded frames as Binance / Bybit on loopback.

Prints the base URLs (``C8_INGEST_VENUE_URLS=...``) and the served symbols with their
precisions, then runs until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from context8.emulator.copies import CopySpecError, parse_copies
from context8.emulator.recording import (
    DEFAULT_MAX_GAP_MS,
    RecordingError,
    default_files,
    load_all,
)
from context8.emulator.server import START_MODES, Emulator

log = logging.getLogger("context8.emulator")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m context8.emulator",
        description=(
            "Serve recorded exchange frames over real WebSocket and HTTP on loopback, as "
            "Binance (USD-M, COIN-M, spot) and Bybit (linear, spot) public market data."
        ),
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="recorded files laid out <venue>-<market>/<SYMBOL>/<file> (default: every "
        "bundled file in data/ except the 2023 spot file, which has no snapshot)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="pace on exchange time, N x (default 1)"
    )
    parser.add_argument(
        "--start",
        choices=START_MODES,
        default="on-subscribe",
        help="when a symbol's clock starts: when its depth and trade streams (Bybit: its "
        "order book) have subscribers (default), at server start (now), or only when "
        "POST /_emulator/start says so (manual)",
    )
    parser.add_argument(
        "--copies",
        action="append",
        default=[],
        metavar="MARKET:SYMBOL=N",
        help="serve N renamed copies of a recorded symbol (e.g. binance-usdm:BTCUSDT=50)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between the server's ping frames on Binance connections (default 20)",
    )
    parser.add_argument(
        "--max-gap",
        type=float,
        default=DEFAULT_MAX_GAP_MS / 1000,
        help="a pause longer than this many seconds between two files of a symbol is cut "
        "out of the schedule (default 10)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return parser


async def serve(emulator: Emulator, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM / SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    print_banner(emulator)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await emulator.stop()


def print_banner(emulator: Emulator) -> None:
    urls = emulator.urls()
    table = urls["symbols"]
    out = sys.stdout
    out.write(
        f"context8 venue emulator on http://{emulator.host}:{emulator.port} "
        f"(speed {emulator.speed:g}, clocks start {emulator.start_mode})\n"
    )
    out.write(f"C8_INGEST_VENUE_URLS={urls['venue_urls']}\n")
    live = ",".join(f"{row['market']}:{row['symbol']}" for row in table)
    out.write(f"C8_INGEST_LIVE_SYMBOLS={live}\n")
    # Copies are names ingest cannot know: their precisions, in its override format.
    precisions = ",".join(
        f"{row['symbol']}={row['price_precision']}:{row['size_precision']}"
        for row in table
        if row["copy_of"]
    )
    if precisions:
        out.write(f"C8_INGEST_PRECISIONS={precisions}\n")
    out.write(f"{len(table)} symbols (price:size precision):\n")
    for row in table:
        origin = f"  copy of {row['copy_of']}" if row["copy_of"] else ""
        out.write(
            f"  {row['market']:<14} {row['symbol']:<16} "
            f"{row['price_precision']}:{row['size_precision']}{origin}\n"
        )
    out.write("control API: /_emulator/stats /_emulator/fault /_emulator/clear "
              "/_emulator/start /_emulator/book /_emulator/urls\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.speed <= 0:
        parser.error("--speed must be > 0")
    if args.ping_interval <= 0:
        parser.error("--ping-interval must be > 0")
    try:
        copies = parse_copies(args.copies)
        files = [Path(f) for f in args.files] or default_files()
        began = time.monotonic()
        recordings = load_all(files, int(args.max_gap * 1000))
        log.info(
            "loaded %d symbols (%d frames) in %.1f s",
            len(recordings),
            sum(len(r.events) for r in recordings),
            time.monotonic() - began,
        )
        emulator = Emulator(
            recordings,
            speed=args.speed,
            start_mode=args.start,
            copies=copies,
            ping_interval=args.ping_interval,
            host=args.host,
            port=args.port,
        )
        asyncio.run(serve(emulator))
    except (RecordingError, CopySpecError, ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
