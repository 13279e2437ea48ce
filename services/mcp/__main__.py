"""``python -m services.mcp [--stdio | --http]``: run the read API (default: C8_MCP_TRANSPORT)."""

from __future__ import annotations

import argparse

from services.mcp.main import main
from services.mcp.settings import Settings
from shared.shell import serve

parser = argparse.ArgumentParser(prog="python -m services.mcp", description=__doc__)
mode = parser.add_mutually_exclusive_group()
mode.add_argument(
    "--stdio",
    action="store_const",
    const="stdio",
    dest="transport",
    help="serve MCP over stdin/stdout",
)
mode.add_argument(
    "--http",
    action="store_const",
    const="http",
    dest="transport",
    help="serve MCP (/mcp) and JSON routes over HTTP",
)
args = parser.parse_args()


def settings() -> Settings:
    return Settings() if args.transport is None else Settings(mcp_transport=args.transport)


raise SystemExit(serve("mcp", settings, main))
