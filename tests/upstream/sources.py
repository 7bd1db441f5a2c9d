"""What the fetch tests point daemon.upstream.fetch at: a SourceConfig with short test
timeouts, and a loopback URL where nothing listens."""

from __future__ import annotations

import socket
from typing import Any

from daemon.upstream.fetch import SourceConfig
from tests.support.fake_binance import SPOT


def make_cfg(*bases: str, **overrides: Any) -> SourceConfig:
    """A spot SourceConfig over `bases` with short test timeouts, then `overrides`."""
    values: dict[str, Any] = {
        "base_urls": bases,
        "path": SPOT,
        "timeout_total": 4.0,
        "timeout_connect": 1.0,
        "timeout_read": 2.0,
        "user_agent": "symbold-test/1",
    }
    values.update(overrides)
    return SourceConfig(**values)


def closed_port_url() -> str:
    """A loopback URL nobody listens on (the port was free a moment ago): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
