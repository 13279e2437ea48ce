"""Lease calls of many symbols in one round trip.

A worker holds a writer lease per symbol (``shared.lease``) and renews every one each
third of the TTL. Renewed one by one, that is a round trip (and an event-loop wake-up)
per symbol and renewal: with 50 symbols, 150 a second, more than every other Redis call
of the worker together. ``BatchedScripts`` stands in for ``shared.scripts.Scripts`` under
the worker's ``LeaseClient``: the script calls made in one turn of the event loop go out
together in one pipeline (``Scripts.pipelined``, per server on a cluster), and each
caller gets its own reply (or its own exception). The worker renews all its leases in
the same turn (``CalcWorker._renew_loop``), so a renewal round is one round trip.

The lease client takes the time a call is *made* as its send time (``sent``), and the
pipeline leaves a moment later: the validity it computes is never later than it would
be with a direct call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.redis_client import RedisClient
from shared.scripts import Scripts

_Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class BatchedScripts(Scripts):
    """``Scripts`` whose calls of one event-loop turn share a pipeline."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self._pending: dict[str, list[_Call]] = {}
        self._flushing: set[asyncio.Task[None]] = set()
        #: Pipelines sent (tests).
        self.rounds = 0

    async def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.setdefault(name, []).append((keys, args, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for name, calls in pending.items():
            task = asyncio.create_task(self._send(name, calls), name=f"scripts:{name}")
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, name: str, calls: list[_Call]) -> None:
        self.rounds += 1
        try:
            results = await self.pipelined(name, [(k, a) for k, a, _ in calls])
        except asyncio.CancelledError:
            for _, _, future in calls:
                future.cancel()
            raise
        except Exception as exc:  # a bug: every caller learns it
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), result in zip(calls, results, strict=True):
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
