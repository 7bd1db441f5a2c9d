"""The Redis target: which URL, in what spelling, and where a client connects.

A documented import path kept for callers written before the split: the URL parsing lives in
:mod:`daemon.config.redis_url`, the mode/sentinel/cluster combination in
:mod:`daemon.config.deployment`, and redaction in :mod:`daemon.redaction`.
"""

from __future__ import annotations

from daemon.config.deployment import Deployment, deployment
from daemon.config.redis_url import (
    SUPPORTED_SCHEMES,
    Mode,
    RedisURL,
    format_address,
    parse_address,
    parse_redis_url,
    resolve_redis_url,
)
from daemon.redaction import redact_url

__all__ = [
    "SUPPORTED_SCHEMES",
    "Deployment",
    "Mode",
    "RedisURL",
    "deployment",
    "format_address",
    "parse_address",
    "parse_redis_url",
    "redact_url",
    "resolve_redis_url",
]
