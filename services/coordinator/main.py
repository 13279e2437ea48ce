"""The coordinator's body in the service shell (``shared/shell.py``): two clients, the loop."""

from __future__ import annotations

from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.service import Coordinator
from services.coordinator.settings import Settings
from shared.shell import Shell


async def main(shell: Shell[Settings]) -> None:
    settings = shell.settings
    client = shell.redis()
    pubsub_client = shell.redis(blocking_ms=1000)
    coordinator = Coordinator(client, pubsub_client, settings, CoordinatorMetrics(), shell.log)
    await coordinator.run(shell.shutdown)
