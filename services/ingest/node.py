"""Building the Nautilus TradingNode: the replay client (or live venue clients) + the Actor."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from nautilus_trader.config import LoggingConfig, TradingNodeConfig
from nautilus_trader.live.node import TradingNode

from services.ingest.actor import IngestActor, IngestActorConfig
from services.ingest.feeds import Feed
from services.ingest.replay_client import (
    REPLAY_CLIENT_ID,
    ReplayClientConfig,
    ReplayHooks,
    make_replay_factory,
)
from services.ingest.settings import Settings
from services.ingest.side_channel import SideChannel
from services.ingest.writer import StreamWriter


def add_actor(
    node: TradingNode,
    settings: Settings,
    client_ids: dict[Any, str],
    stall_clock: Literal["event", "wall"],
    feeds: list[Feed],
    side: SideChannel,
    writer: StreamWriter,
    log: Any,
) -> IngestActor:
    """Add the ingest Actor to ``node`` and build it. Replay and live differ only in
    the stall clock (replay decides stalls on exchange time, live on the wall clock)."""
    actor = IngestActor(
        IngestActorConfig(
            client_ids=client_ids,
            checkpoint_interval_s=settings.ingest_checkpoint_interval_s,
            snapshot_wait_s=settings.ingest_snapshot_wait_s,
            stall_after_s=settings.ingest_stall_after_s,
            stall_after=settings.stall_overrides(),
            stall_clock=stall_clock,
        ),
        feeds,
        side,
        writer,
        log,
    )
    node.trader.add_actor(actor)
    node.build()
    return actor


def node_config(settings: Settings, data_clients: dict[str, Any]) -> TradingNodeConfig:
    return TradingNodeConfig(
        trader_id="INGEST-001",
        data_clients=data_clients,
        logging=LoggingConfig(
            log_level=settings.ingest_nautilus_log_level.upper(), log_colors=False
        ),
        # Nothing to reconcile or wait for: ingest has no execution side.
        timeout_connection=10.0,
        timeout_disconnection=1.0,
        timeout_post_stop=0.1,
        timeout_shutdown=1.0,
    )


def build_replay_node(
    settings: Settings,
    feeds: list[Feed],
    side: SideChannel,
    writer: StreamWriter,
    hooks: ReplayHooks,
    log: Any,
) -> tuple[TradingNode, IngestActor]:
    """A TradingNode whose data client replays the feeds' recorded files."""
    client_config = ReplayClientConfig(speed=settings.speed)
    node = TradingNode(
        node_config(settings, {REPLAY_CLIENT_ID: client_config}),
        loop=asyncio.get_running_loop(),
    )
    node.add_data_client_factory(REPLAY_CLIENT_ID, make_replay_factory(feeds, side, hooks))
    client_ids = {feed.instrument_id: REPLAY_CLIENT_ID for feed in feeds}
    actor = add_actor(node, settings, client_ids, "event", feeds, side, writer, log)
    return node, actor
