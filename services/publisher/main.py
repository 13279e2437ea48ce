"""Entry point of the publisher process: settings, logs, metrics, client, loop."""

from __future__ import annotations

from services.publisher.metrics import PublisherMetrics
from services.publisher.service import Publisher
from services.publisher.settings import Settings
from shared.lifecycle import Shutdown
from shared.logging import configure_logging
from shared.metrics import start_metrics
from shared.redis_client import make_redis


async def main(shutdown: Shutdown) -> None:
    settings = Settings()
    log = configure_logging("publisher", settings.node_id, settings.log_level, settings.log_format)
    port = start_metrics("publisher", settings.metrics_host, settings.metrics_port)
    log.info(
        "publisher_starting",
        metrics_port=port,
        validate=settings.publisher_validate,
        batch=settings.publisher_batch,
    )
    client = make_redis(settings, blocking_ms=settings.publisher_block_ms)
    try:
        await Publisher(client, settings, PublisherMetrics(), log).run(shutdown)
    finally:
        await client.aclose()
    log.info("publisher_stopped")
