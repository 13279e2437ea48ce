"""Public REST requests to a venue (Binance depth snapshots), with what limits them.

aiohttp rather than Nautilus's HTTP client: ingest needs the answer's headers (a 429 or
418 carries ``Retry-After``, every Binance answer ``X-MBX-USED-WEIGHT-1M``), which
NautilusTrader 1.221's ``HttpResponse`` does not expose.
"""

from __future__ import annotations

import aiohttp

from services.ingest.venue_limits import RestBudget

TIMEOUT_S = 10.0


class VenueHttpError(Exception):
    """An HTTP error answer of the venue."""

    def __init__(self, url: str, status: int, retry_after_s: float | None, body: bytes) -> None:
        super().__init__(f"{url}: HTTP {status} {body[:200]!r}")
        self.status = status
        self.retry_after_s = retry_after_s


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


class PublicRest:
    """GETs to one venue host, spending request weight from a shared budget."""

    def __init__(self, base_url: str, budget: RestBudget, weight_header: str = "") -> None:
        self.base_url = base_url
        self.budget = budget
        self._weight_header = weight_header
        #: The venue's own count of weight used this minute, from its last answer.
        self.venue_used: int | None = None
        self._session: aiohttp.ClientSession | None = None

    async def get(self, path: str, params: dict[str, str], weight: int) -> bytes:
        """Wait for ``weight`` in the budget, GET, return the body (or raise).

        ``VenueHttpError`` for an HTTP error answer (a 429/418 also stops every later
        request for its ``Retry-After``); ``aiohttp.ClientError`` / ``TimeoutError`` when
        the venue does not answer.
        """
        await self.budget.acquire(weight)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
                headers={"User-Agent": "context8-ingest"},
            )
        url = f"{self.base_url}{path}"
        async with self._session.get(url, params=params) as response:
            body = await response.read()
            used = response.headers.get(self._weight_header) if self._weight_header else None
            if used is not None and used.isdigit():
                self.venue_used = int(used)
            if response.status >= 400:
                retry_after = _seconds(response.headers.get("Retry-After"))
                if response.status in (418, 429):
                    self.budget.back_off(retry_after if retry_after is not None else 60.0)
                raise VenueHttpError(str(response.url), response.status, retry_after, body)
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
