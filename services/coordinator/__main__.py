"""``python -m services.coordinator``: run one coordinator (leader or standby)."""

from __future__ import annotations

from services.coordinator.main import main
from shared.lifecycle import run_service

raise SystemExit(run_service(main))
