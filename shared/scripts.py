"""Lua scripts (shared/lua/*.lua): their sources, SHA1s, and calls by name.

Every service calls Lua through here: ``Scripts`` runs a script with redis-py's
``Script`` object (EVALSHA first; on NOSCRIPT, a restarted or failed-over Redis, it loads
the script and retries), or many calls in one round trip (``pipelined``). One hot path
sends its calls pre-encoded: ingest's writer packs ``EVALSHA script_sha("stream_append")``
for a whole batch of symbols into one RESP write (services/ingest/writer.py, the
capacity bench's largest cost), and on NOSCRIPT loads ``script_source`` the same way.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError


@cache
def script_names() -> tuple[str, ...]:
    """Names of every script in shared/lua (file name without ``.lua``)."""
    folder = resources.files("shared").joinpath("lua")
    return tuple(sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua")))


@cache
def script_source(name: str) -> str:
    """The Lua source of ``shared/lua/<name>.lua``."""
    return resources.files("shared").joinpath(f"lua/{name}.lua").read_text()


@cache
def script_sha(name: str) -> bytes:
    """The SHA1 (hex, ASCII) EVALSHA names the script by."""
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()


class Scripts:
    """The project's Lua scripts registered on one client, called by name."""

    def __init__(self, client: Redis | Any) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in script_names()
        }

    async def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run the script (EVALSHA; on NOSCRIPT it is loaded and run again)."""
        return await self._scripts[name](keys=keys, args=args)

    async def pipelined(self, name: str, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        """Run the script once per ``(keys, args)`` in one round trip (per server).

        Replies in call order; a failed call's exception stands in its place. EVALSHA is
        queued through ``execute_command`` because redis-py's cluster pipeline refuses
        script objects; it routes EVALSHA by its first key, so this runs the same on one
        Redis and on a Redis Cluster. A call that met NOSCRIPT (a restarted or promoted
        server) is run again on its own, which loads the script there.
        """
        if not calls:
            return []
        script = self._scripts[name]
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            results: list[Any] = await pipe.execute(raise_on_error=False)
        except RedisError as exc:
            return [exc] * len(calls)
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError):
                keys, args = calls[i]
                try:
                    results[i] = await script(keys=keys, args=args)
                except RedisError as exc:
                    results[i] = exc
        return results
