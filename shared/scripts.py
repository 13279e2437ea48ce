"""Lua scripts (shared/lua/*.lua) bound to a Redis client.

Each script runs through redis-py's ``Script`` object: EVALSHA first, and on NOSCRIPT
(a restarted or failed-over Redis) it loads the script again and retries.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def script_names() -> tuple[str, ...]:
    """Names of every script in shared/lua (file name without ``.lua``)."""
    folder = resources.files("shared").joinpath("lua")
    return tuple(sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua")))


@cache
def script_source(name: str) -> str:
    """The Lua source of ``shared/lua/<name>.lua``."""
    return resources.files("shared").joinpath(f"lua/{name}.lua").read_text()


class Scripts:
    """The project's Lua scripts registered on one client, called by name."""

    def __init__(self, client: Redis | Any) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in script_names()
        }

    async def __call__(
        self, name: str, keys: list[str], args: list[Any], client: Any = None
    ) -> Any:
        """Run the script; with ``client`` a pipeline, queue it there (loaded on NOSCRIPT)."""
        return await self._scripts[name](keys=keys, args=args, client=client)
