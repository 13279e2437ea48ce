"""``python -m services.publisher``: run one publisher (a consumer of the group)."""

from __future__ import annotations

from services.publisher.main import main
from services.publisher.settings import Settings
from shared.shell import serve

raise SystemExit(serve("publisher", Settings, main))
