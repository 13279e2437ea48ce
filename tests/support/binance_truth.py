"""An independent, deliberately plain reading of recorded Binance files for tests.

It knows nothing of the project's code: it parses the raw lines with json and keeps
the depth events' update ids and times plus the exchange's own bookTicker stream,
which is the ground truth for top of book.
"""

from __future__ import annotations

import bisect
import gzip
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BookTicker:
    u: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


@dataclass
class Truth:
    #: Applied-order depth events: (transaction time ms, U, u).
    depth: list[tuple[int, int, int]]
    #: bookTickers sorted by update id.
    tickers: list[BookTicker]

    def comparable_ticker(self, t_ms: int) -> BookTicker | None:
        """The bookTicker that shows the book after every depth event with time <= t_ms.

        Comparable means its update id lies in [u of the last applied event, U of the
        next one): the book cannot have changed between those ids.
        """
        times = [d[0] for d in self.depth]
        i = bisect.bisect_right(times, t_ms) - 1
        if i < 0 or i + 1 >= len(self.depth):
            return None
        u_last, u_next_first = self.depth[i][2], self.depth[i + 1][1]
        ids = [tk.u for tk in self.tickers]
        j = bisect.bisect_right(ids, u_next_first - 1) - 1
        if j < 0 or self.tickers[j].u < u_last:
            return None
        return self.tickers[j]


def read_truth(files: list[Path]) -> Truth:
    """Depth events after the REST snapshot (futures rules) and every bookTicker."""
    depth: list[tuple[int, int, int]] = []
    tickers: list[BookTicker] = []
    pending: list[tuple[int, int, int]] = []
    snapshot_id: int | None = None
    for path in files:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                _, _, body = line.partition(" ")
                msg = json.loads(body)
                if "stream" not in msg:
                    snapshot_id = msg["lastUpdateId"]
                    depth.extend(p for p in pending if p[2] >= snapshot_id)
                    pending.clear()
                    continue
                data = msg["data"]
                stream = msg["stream"]
                if "@depth" in stream:
                    event = (data.get("T") or data["E"], data["U"], data["u"])
                    (depth if snapshot_id is not None else pending).append(event)
                elif stream.endswith("@bookTicker"):
                    tickers.append(
                        BookTicker(
                            data["u"],
                            float(data["b"]),
                            float(data["B"]),
                            float(data["a"]),
                            float(data["A"]),
                        )
                    )
    tickers.sort(key=lambda tk: tk.u)
    return Truth(depth, tickers)
