"""Pure analytics of the calc worker: no Redis, no clocks except the exchange's.

Entry points:
- ``SymbolCore(symbol, venue, params)``: ``apply(entry) -> [Cycle]``, ``advance_to(t)``.
- ``replay(entries, symbol, venue, params)``: decoded wire entries in stream order ->
  ``(cycle_time_ns, report dict)``, the same path the worker runs.
- ``report_at(entries, symbol, venue, t_ns)``: the report of the last boundary <= t_ns.
"""

from services.calc.analytics.book import BookState, DeltaOutcome, L2Book
from services.calc.analytics.core import (
    CoreParams,
    Cycle,
    SymbolCore,
    replay,
    report_at,
    with_writer,
)
from services.calc.analytics.scheduler import CycleClock

__all__ = [
    "BookState",
    "CoreParams",
    "Cycle",
    "CycleClock",
    "DeltaOutcome",
    "L2Book",
    "SymbolCore",
    "replay",
    "report_at",
    "with_writer",
]
