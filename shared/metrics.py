"""Prometheus exposition: every service serves its own registry on its own port."""

from __future__ import annotations

from prometheus_client import Gauge, start_http_server

BUILD_INFO = Gauge(
    "context8_build_info",
    "Always 1; labels say which service and version this process runs.",
    ["service", "version"],
)


def start_metrics(service: str, host: str, port: int) -> int:
    """Serve /metrics on ``host:port`` (0 picks a free port); return the bound port."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("context8")
    except PackageNotFoundError:
        ver = "dev"
    BUILD_INFO.labels(service=service, version=ver).set(1)
    server, _thread = start_http_server(port, addr=host)
    bound: int = server.server_port
    return bound
