"""Entry point of the coordinator process: settings, logs, metrics, clients, loop."""

from __future__ import annotations

from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.service import Coordinator
from services.coordinator.settings import Settings
from shared.lifecycle import Shutdown
from shared.logging import configure_logging
from shared.metrics import start_metrics
from shared.redis_client import make_redis


async def main(shutdown: Shutdown) -> None:
    settings = Settings()
    log = configure_logging(
        "coordinator", settings.node_id, settings.log_level, settings.log_format
    )
    port = start_metrics("coordinator", settings.metrics_host, settings.metrics_port)
    log.info(
        "coordinator_starting",
        metrics_port=port,
        node_ttl_ms=settings.coordinator_node_ttl_ms,
        leader_ttl_ms=settings.coordinator_leader_ttl_ms,
    )
    client = make_redis(settings)
    pubsub_client = make_redis(settings, blocking_ms=1000)
    try:
        coordinator = Coordinator(client, pubsub_client, settings, CoordinatorMetrics(), log)
        await coordinator.run(shutdown)
    finally:
        await pubsub_client.aclose()
        await client.aclose()
    log.info("coordinator_stopped")
