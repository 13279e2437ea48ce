"""Chaos tests: print the measured failover times and safety counts after the run."""

from __future__ import annotations

import pytest

from tests.chaos.chaos_kit import SUMMARY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section("chaos: failover times and safety counts")
        for line in SUMMARY:
            terminalreporter.write_line(line)
