"""Structured logs: one JSON object per line, bound to service and node id."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(service: str, node_id: str, level: str = "INFO", fmt: str = "json") -> Any:
    """Configure structlog for this process and return a logger bound to the service."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service, node_id=node_id)
    return structlog.get_logger()
