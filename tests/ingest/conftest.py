"""Fixtures of the ingest tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers module sits beside this file; tests import it by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_support import SESSIONS, SessionResult, replay_session


@pytest.fixture(scope="session")
def session_results() -> dict[str, SessionResult]:
    """Every kit session with a snapshot, replayed once for the whole test run."""
    return {name: replay_session(files) for name, files in SESSIONS.items()}
