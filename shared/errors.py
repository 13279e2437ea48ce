"""The one exception tree of context8.

Context8Error
├── ConfigError          bad settings or symbol configuration (start-up error)
├── InvalidSymbolError   a symbol that is not A-Z/0-9
├── UnknownSymbolError   a valid symbol that nobody publishes
└── WireFormatError      a malformed stream entry (counted and skipped by consumers)
"""

from __future__ import annotations


class Context8Error(Exception):
    """Base of every error context8 raises on purpose."""


class ConfigError(Context8Error):
    """Settings or symbol configuration that cannot work."""


class InvalidSymbolError(Context8Error, ValueError):
    """A symbol that is not upper-case letters and digits."""


class UnknownSymbolError(Context8Error, LookupError):
    """A valid symbol with no report; ``known`` lists the symbols that have one."""

    def __init__(self, symbol: str, known: list[str]) -> None:
        self.symbol = symbol
        self.known = sorted(known)
        names = ", ".join(self.known) if self.known else "none yet"
        super().__init__(f"unknown symbol {symbol!r}; known symbols: {names}")


class WireFormatError(Context8Error, ValueError):
    """A stream entry that does not follow the wire format."""
