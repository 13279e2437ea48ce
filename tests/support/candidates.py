"""Where report candidates travel in tests: the partition streams of the default fleet."""

from __future__ import annotations

from typing import Any

from shared import keys
from shared.candidate import Candidate, decode_candidate
from shared.settings import ServiceSettings

#: The fleet's candidate partitions (C8_CANDIDATE_PARTITIONS, as the services read it).
PARTITIONS = ServiceSettings().candidate_partitions


def stream_of(symbol: str) -> str:
    """The candidate stream of ``symbol``'s reports."""
    return keys.candidates_of(symbol, PARTITIONS)


def partition_of(symbol: str) -> int:
    return keys.candidate_partition(symbol, PARTITIONS)


def all_streams() -> list[str]:
    """Every candidate partition stream."""
    return [keys.candidates(p) for p in range(PARTITIONS)]


class CandidateReader:
    """Every candidate calc appends for some symbols, read as it comes (all their
    partition streams, from the start)."""

    def __init__(self, client: Any, symbols: list[str] | tuple[str, ...]) -> None:
        self._client = client
        self._symbols = set(symbols)
        self._cursors: dict[str, str] = {stream_of(s): "0-0" for s in symbols}

    def read(self, block_ms: int = 200) -> list[Candidate]:
        """The candidates appended since the last read (waits up to ``block_ms``)."""
        reply: Any = self._client.xread(self._cursors, block=block_ms)
        out: list[Candidate] = []
        for stream, batch in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in batch:
                self._cursors[name] = entry_id.decode()
                candidate = decode_candidate(fields)
                if candidate.symbol in self._symbols:
                    out.append(candidate)
        return out
