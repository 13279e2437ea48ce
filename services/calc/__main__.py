"""``python -m services.calc``: run one calc worker until SIGTERM/SIGINT."""

from __future__ import annotations

from services.calc.settings import Settings
from services.calc.worker import CalcWorker
from shared.lifecycle import Shutdown, run_service
from shared.logging import configure_logging
from shared.metrics import start_metrics


async def main(shutdown: Shutdown) -> None:
    settings = Settings()
    log = configure_logging("calc", settings.node_id, settings.log_level, settings.log_format)
    port = start_metrics("calc", settings.metrics_host, settings.metrics_port)
    log.info("metrics_listening", port=port)
    await CalcWorker(settings, log).run(shutdown.event)


if __name__ == "__main__":
    raise SystemExit(run_service(main))
