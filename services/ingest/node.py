"""Building the Nautilus TradingNode: the data clients (replay, or one live client per
market) and the ingest Actor with one ``FeedShell`` (feed core + metrics) per feed."""

from __future__ import annotations

import asyncio
from typing import Any

from nautilus_trader.config import LoggingConfig, TradingNodeConfig
from nautilus_trader.live.node import TradingNode

from services.ingest.actor import FeedShell, IngestActor, IngestActorConfig
from services.ingest.core import FeedCore
from services.ingest.feeds import Feed
from services.ingest.offline import IngestOptions
from services.ingest.replay_client import (
    REPLAY_CLIENT_ID,
    ReplayClientConfig,
    ReplayHooks,
    make_replay_factory,
)
from services.ingest.settings import Settings
from services.ingest.side_channel import SideChannel
from services.ingest.writer import StreamWriter


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


def add_actor(
    node: TradingNode,
    settings: Settings,
    client_ids: dict[str, str],
    feeds: list[Feed],
    side: SideChannel,
    writer: StreamWriter,
    log: Any,
) -> IngestActor:
    """Add the ingest Actor to ``node`` and build it. Replay and live differ only in
    the stall clock (replay decides stalls on exchange time, live on the wall clock)."""
    options = IngestOptions.from_settings(settings)
    wall = settings.ingest_mode == "live"
    shells = [
        FeedShell(FeedCore(feed, options.core_config(feed.symbol, wall)), writer, side, log)
        for feed in feeds
    ]
    actor = IngestActor(IngestActorConfig(client_ids=client_ids), shells, side, log)
    node.trader.add_actor(actor)
    node.build()
    return actor


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
    actor = add_actor(node, settings, client_ids, feeds, side, writer, log)
    return node, actor


def build_live_node(
    settings: Settings,
    feeds: list[Feed],
    side: SideChannel,
    writer: StreamWriter,
    log: Any,
) -> tuple[TradingNode, IngestActor]:
    """A TradingNode with one Nautilus venue client per market and the same Actor."""
    from services.ingest.venues import parse_venue_urls
    from services.ingest.venues.live import (
        add_live_clients,
        client_config,
        client_name,
        live_client_groups,
    )

    urls = parse_venue_urls(settings.ingest_venue_urls)
    configs = {client_name(market): client_config(market) for market in live_client_groups(feeds)}
    node = TradingNode(node_config(settings, configs), loop=asyncio.get_running_loop())
    client_ids = add_live_clients(
        node, feeds, side, urls, log, settings.ingest_open_interest_poll_s
    )
    actor = add_actor(node, settings, client_ids, feeds, side, writer, log)
    return node, actor
