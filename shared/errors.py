"""The one exception tree of context8.

Context8Error
├── ConfigError          bad settings or symbol configuration (start-up error)
├── InvalidSymbolError   a symbol that is not A-Z/0-9
├── UnknownSymbolError   a valid symbol that nobody publishes
└── WireFormatError      a malformed stream entry (counted and skipped by consumers)
"""

from __future__ import annotations

import difflib


class Context8Error(Exception):
    """Base of every error context8 raises on purpose."""


class ConfigError(Context8Error):
    """Settings or symbol configuration that cannot work."""


class InvalidSymbolError(Context8Error, ValueError):
    """A symbol that is not upper-case letters and digits."""


class UnknownSymbolError(Context8Error, LookupError):
    """A valid symbol with no report.

    The message stays short whatever the number of known symbols: the closest few
    (``suggestions``) and how many there are, not the whole list (``list_symbols`` has it).
    """

    def __init__(self, symbol: str, known: list[str]) -> None:
        self.symbol = symbol
        self.known_count = len(known)
        self.suggestions = suggest(symbol, known)
        super().__init__(f"unknown symbol {symbol!r}; {known_hint(self.suggestions, len(known))}")


#: How many close matches an unknown-symbol error names.
MAX_SUGGESTIONS = 5


def suggest(symbol: str, known: list[str]) -> list[str]:
    """Up to MAX_SUGGESTIONS known symbols closest to ``symbol`` (prefix matches first)."""
    prefix = sorted(k for k in known if k.startswith(symbol[:3]))[:MAX_SUGGESTIONS]
    close = difflib.get_close_matches(symbol, known, n=MAX_SUGGESTIONS, cutoff=0.6)
    return list(dict.fromkeys(close + prefix))[:MAX_SUGGESTIONS]


def known_hint(suggestions: list[str], count: int) -> str:
    if count == 0:
        return "no symbols are known yet"
    head = f"did you mean {', '.join(suggestions)}? " if suggestions else ""
    return f"{head}{count} symbols are known (list_symbols or GET /v1/symbols lists them)"


class WireFormatError(Context8Error, ValueError):
    """A stream entry that does not follow the wire format."""
