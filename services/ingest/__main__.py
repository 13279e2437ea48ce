"""``python -m services.ingest``: run the ingest service until SIGTERM."""

from __future__ import annotations

from services.ingest.service import main
from services.ingest.settings import Settings
from shared.shell import serve

raise SystemExit(serve("ingest", Settings, main))
