"""A calc worker's side of membership: heartbeat (server-timestamped) and leave."""

from __future__ import annotations

import json
import os
import socket
import time

from shared import keys
from shared.redis_client import RedisClient
from shared.scripts import Scripts


class Membership:
    def __init__(self, client: RedisClient, scripts: Scripts, node_id: str) -> None:
        self._client = client
        self._scripts = scripts
        self.node_id = node_id
        self._info = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
        )

    async def heartbeat(self) -> int:
        """Record that this node is alive; return Redis server time (ms)."""
        now: int = await self._scripts(
            "heartbeat",
            keys=[keys.NODES, keys.NODE_INFO],
            args=[self.node_id, self._info, keys.MEMBERSHIP_CHANNEL],
        )
        return int(now)

    async def leave(self) -> bool:
        """Deregister at once so the coordinator moves this node's symbols now."""
        removed = await self._scripts(
            "leave",
            keys=[keys.NODES, keys.NODE_INFO],
            args=[self.node_id, keys.MEMBERSHIP_CHANNEL],
        )
        return bool(removed)
