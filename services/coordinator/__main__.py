"""``python -m services.coordinator``: run one coordinator (leader or standby)."""

from __future__ import annotations

from services.coordinator.main import main
from services.coordinator.settings import Settings
from shared.shell import serve

raise SystemExit(serve("coordinator", Settings, main))
