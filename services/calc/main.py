"""The calc worker's body in the service shell (``shared/shell.py``)."""

from __future__ import annotations

from services.calc.metrics import CalcMetrics
from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared.shell import Shell


async def main(shell: Shell[Settings]) -> None:
    settings = shell.settings
    client = shell.redis()
    blocking = shell.redis(blocking_ms=settings.calc_xread_block_ms + 1000)
    worker = CalcWorker(settings, shell.log, client, blocking, CalcMetrics())
    await worker.run(shell.shutdown.event)
