"""The calc worker's body in the service shell (``shared/shell.py``)."""

from __future__ import annotations

from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared.shell import Shell


async def main(shell: Shell[Settings]) -> None:
    settings = shell.settings
    client = shell.redis()
    blocking = shell.redis(blocking_ms=settings.calc_xread_block_ms + 1000)
    await CalcWorker(settings, shell.log, client, blocking).run(shell.shutdown.event)
