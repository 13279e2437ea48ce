"""``python -m services.publisher``: run one publisher (a consumer of the group)."""

from __future__ import annotations

from services.publisher.main import main
from shared.lifecycle import run_service

raise SystemExit(run_service(main))
