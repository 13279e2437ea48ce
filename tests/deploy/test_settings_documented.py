"""Every service's settings are documented in README.md's one table, and bad values
are a clear start-up error."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from pydantic import ValidationError

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "calc", "coordinator", "publisher", "mcp")


def _settings(name: str) -> type:
    module = importlib.import_module(f"services.{name}.settings")
    return module.Settings  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_in_the_readme_table(service: str) -> None:
    readme = REPO.joinpath("README.md").read_text()
    missing = [
        f"C8_{field.upper()}"
        for field in _settings(service).model_fields
        if f"`C8_{field.upper()}`" not in readme
    ]
    assert not missing, f"{service} settings missing from README.md: {missing}"


@pytest.mark.parametrize("service", SERVICES)
def test_bad_setting_is_a_clear_error(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C8_LOG_LEVEL", "LOUD")
    with pytest.raises(ValidationError, match="log"):
        _settings(service)()
