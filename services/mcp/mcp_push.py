"""MCP resource subscriptions for ``report://{SYMBOL}``, both styles, fed by the PushHub.

- 2026-07-28 ``subscriptions/listen``: the request's response is the stream. Our handler
  replaces the SDK's ``ListenHandler`` (whose default in-process bus nobody publishes to:
  it acknowledged ``report://`` subscriptions and then stayed silent). It validates the
  URIs, subscribes them on the hub, acknowledges, then sends one
  ``notifications/resources/updated`` per (rate-limited) update until the client leaves
  or the server shuts down (graceful close: the listen result is the last frame).
- Legacy (2025-era handshake) ``resources/subscribe`` / ``resources/unsubscribe``: per
  connection, one hub subscription whose updates go out on the connection's standalone
  channel (stdio: stdout; streamable HTTP: the session's GET stream).

Only ``report://SYMBOL`` of a known symbol can be subscribed; anything else is an
``INVALID_PARAMS`` error naming the problem (the subscription is not opened).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    ResourceUpdatedNotification,
    ResourceUpdatedNotificationParams,
    SubscribeRequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from services.mcp.errors import StoreUnavailableError
from services.mcp.push import PushCapacityError, PushHub, Subscription, Update
from services.mcp.service import ReportService, normalize_symbol
from shared.errors import InvalidSymbolError, UnknownSymbolError

log = structlog.get_logger()

REPORT_SCHEME = "report://"
#: Connection.state key of a legacy connection's subscriptions.
_LEGACY_STATE = "context8.push.legacy"


async def resolve_uris(service: ReportService, uris: Sequence[str]) -> dict[str, list[str]]:
    """symbol -> the client's URIs for it (kept verbatim: notifications must carry the
    exact URI the client subscribed to). MCPError for a URI that cannot be subscribed."""
    by_symbol: dict[str, list[str]] = {}
    for uri in uris:
        if not uri.startswith(REPORT_SCHEME):
            raise MCPError(
                INVALID_PARAMS,
                f"cannot subscribe to {uri!r}: only report://SYMBOL resources "
                "(e.g. report://BTCUSDT) can be subscribed",
            )
        try:
            symbol = normalize_symbol(uri[len(REPORT_SCHEME) :])
        except InvalidSymbolError as exc:
            raise MCPError(INVALID_PARAMS, f"cannot subscribe to {uri!r}: {exc}") from exc
        by_symbol.setdefault(symbol, []).append(uri)
    if len(by_symbol) > service.max_batch:
        raise MCPError(
            INVALID_PARAMS,
            f"{len(by_symbol)} symbols in one subscription; at most {service.max_batch}",
        )
    if by_symbol:
        try:
            known = set(await service.known_symbols())
        except StoreUnavailableError as exc:
            raise MCPError(INTERNAL_ERROR, str(exc)) from exc
        for symbol in by_symbol:
            if symbol not in known:
                error = UnknownSymbolError(symbol, sorted(known))
                raise MCPError(INVALID_PARAMS, f"cannot subscribe to report://{symbol}: {error}")
    return by_symbol


def _honored(requested: SubscriptionFilter) -> SubscriptionFilter:
    """What the ack promises (as the SDK's ListenHandler: list-changed kinds are honored
    and simply never fire: the tool/prompt/resource lists of this server do not change)."""
    return SubscriptionFilter(
        tools_list_changed=True if requested.tools_list_changed else None,
        prompts_list_changed=True if requested.prompts_list_changed else None,
        resources_list_changed=True if requested.resources_list_changed else None,
        resource_subscriptions=list(requested.resource_subscriptions)
        if requested.resource_subscriptions
        else None,
    )


class ListenHandler:
    """Serves ``subscriptions/listen`` (2026-07-28) from the PushHub."""

    def __init__(self, service: ReportService, hub: PushHub) -> None:
        self._service = service
        self._hub = hub

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        honored = _honored(params.notifications)
        uris = await resolve_uris(self._service, honored.resource_subscriptions or [])
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        # Subscribed (and listening) before the ack: an update right after it is not lost.
        try:
            sub = await self._hub.open("mcp_listen", uris)
        except PushCapacityError as exc:
            raise MCPError(INTERNAL_ERROR, str(exc)) from exc
        try:
            await ctx.session.send_notification(
                SubscriptionsAcknowledgedNotification(
                    params=SubscriptionsAcknowledgedNotificationParams(
                        notifications=honored, _meta=meta
                    )
                ),
                related_request_id=subscription_id,
            )
            async for update in sub:
                for uri in uris.get(update.symbol, ()):
                    await ctx.session.send_notification(
                        ResourceUpdatedNotification(
                            params=ResourceUpdatedNotificationParams(uri=uri, _meta=meta)
                        ),
                        related_request_id=subscription_id,
                    )
                sub.delivered(update)
        finally:
            sub.close()
        return SubscriptionsListenResult(_meta=meta)


class LegacySubscriptions:
    """One legacy connection's ``resources/subscribe`` state and its sender task."""

    def __init__(self, hub: PushHub, connection: Any) -> None:
        self.sub: Subscription = hub.subscription("mcp_legacy")
        self.uris: dict[str, set[str]] = {}
        self._connection = connection
        self._task = asyncio.create_task(self._pump(), name="mcp-legacy-push")

    async def _pump(self) -> None:
        try:
            async for update in self.sub:
                await self._send(update)
        except Exception as exc:  # the connection is gone: stop, do not crash the server
            log.info("mcp_legacy_push_ended", error=type(exc).__name__)
            self.close()

    async def _send(self, update: Update) -> None:
        for uri in sorted(self.uris.get(update.symbol, ())):
            await self._connection.send_resource_updated(uri)
        self.sub.delivered(update)

    def close(self) -> None:
        self.sub.close()
        if asyncio.current_task() is not self._task:
            self._task.cancel()


def _connection_of(ctx: ServerRequestContext[Any, Any]) -> Any:
    # The SDK hands handlers a per-request ServerSession; the long-lived Connection (its
    # standalone channel, state and exit stack) is what a subscription must outlive the
    # request with. Not public in mcp 2.3: read defensively.
    connection = getattr(ctx.session, "_connection", None)
    if connection is None or not hasattr(connection, "exit_stack"):
        raise MCPError(INTERNAL_ERROR, "resource subscriptions are not available on this transport")
    return connection


def legacy_handlers(service: ReportService, hub: PushHub) -> tuple[Any, Any]:
    """``resources/subscribe`` and ``resources/unsubscribe`` handlers."""

    async def subscribe(
        ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        uris = await resolve_uris(service, [params.uri])
        connection = _connection_of(ctx)
        state: LegacySubscriptions | None = connection.state.get(_LEGACY_STATE)
        if state is None or state.sub.closed:
            try:
                state = LegacySubscriptions(hub, connection)
            except PushCapacityError as exc:
                raise MCPError(INTERNAL_ERROR, str(exc)) from exc
            connection.state[_LEGACY_STATE] = state
            # Ends with the connection (client gone, session expired or deleted).
            connection.exit_stack.callback(state.close)
        for symbol, symbol_uris in uris.items():
            state.uris.setdefault(symbol, set()).update(symbol_uris)
        await state.sub.add(uris)
        return EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        connection = _connection_of(ctx)
        state: LegacySubscriptions | None = connection.state.get(_LEGACY_STATE)
        if state is None:
            return EmptyResult()
        for symbol, uris in list(state.uris.items()):
            uris.discard(params.uri)
            if not uris:
                del state.uris[symbol]
                state.sub.remove([symbol])
        return EmptyResult()

    return subscribe, unsubscribe


def install_push(server: MCPServer, service: ReportService, hub: PushHub) -> None:
    """Serve both subscription styles on ``server`` (built with ``subscriptions=False``),
    which makes ``resources.subscribe`` advertised, and real, in both protocol eras."""
    lowlevel = server._lowlevel_server  # not public in mcp 2.3; the documented seam
    lowlevel.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, ListenHandler(service, hub)
    )
    subscribe, unsubscribe = legacy_handlers(service, hub)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def end_streams(hub: PushHub, server: MCPServer) -> None:
    """On shutdown: end every push stream now instead of after the shutdown grace: SSE and
    listen streams (their subscriptions close) and legacy sessions' GET streams."""
    hub.close_subscribers()
    try:
        manager = server.session_manager
    except RuntimeError:  # no HTTP app was built (stdio)
        return
    # Sessions are not public in mcp 2.3; closing a GET stream is (the client would
    # reconnect to a live server; this one stops accepting).
    for transport in list(getattr(manager, "_server_instances", {}).values()):
        transport.close_standalone_sse_stream()
