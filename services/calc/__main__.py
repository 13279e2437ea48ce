"""``python -m services.calc``: run one calc worker until SIGTERM/SIGINT."""

from __future__ import annotations

from services.calc.main import main
from services.calc.settings import Settings
from shared.shell import serve

raise SystemExit(serve("calc", Settings, main))
