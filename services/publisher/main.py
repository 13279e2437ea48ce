"""The publisher's body in the service shell (``shared/shell.py``): one client, the loop."""

from __future__ import annotations

from services.publisher.metrics import PublisherMetrics
from services.publisher.service import Publisher
from services.publisher.settings import Settings
from shared.shell import Shell


async def main(shell: Shell[Settings]) -> None:
    settings = shell.settings
    client = shell.redis(blocking_ms=settings.publisher_block_ms)
    await Publisher(client, settings, PublisherMetrics(), shell.log).run(shell.shutdown)
