"""Whether Redis may evict snapshot keys, checked now and then by a market's cycle."""

from __future__ import annotations

import math
import time

import redis
from structlog.stdlib import BoundLogger

from daemon.redis.errors import ProblemKind
from daemon.refresh.result import CycleResult, Outcome
from daemon.snapshot.store import SnapshotStore, evicts

__all__ = ["EVICTION_CHECK_INTERVAL", "EvictionWatch"]

EVICTION_CHECK_INTERVAL = 30.0
"""How often (seconds) a cycle asks INFO for the eviction policy (the first cycle always
does)."""


class EvictionWatch:
    """One market's view of Redis's ``maxmemory-policy``; `mode` is ``[redis] eviction``
    ("warn" or "refuse")."""

    def __init__(self, mode: str, log: BoundLogger) -> None:
        self.mode = mode
        self.log = log
        self.policy: str | None = None
        self._checked = -math.inf

    async def check(self, store: SnapshotStore, market: str) -> CycleResult | None:
        """Warn (or, with mode "refuse", stop this cycle: a failed result) when Redis may
        evict keys.

        Asks INFO at most every EVICTION_CHECK_INTERVAL; logs when the policy is first seen or
        changes. A server that does not tell (INFO refused by an ACL) is not checked."""
        mono = time.monotonic()
        if mono - self._checked >= EVICTION_CHECK_INTERVAL:
            self._checked = mono
            try:
                policy = await store.eviction_policy()
            except redis.ResponseError:
                policy = None
            if policy != self.policy and policy is not None and evicts(policy):
                level = self.log.error if self.mode == "refuse" else self.log.warning
                level(
                    "redis.eviction_policy",
                    policy=policy,
                    action="refusing to write" if self.mode == "refuse" else "warning only",
                    reason="Redis may evict snapshot keys: readers would see listed symbols "
                    "vanish; set maxmemory-policy noeviction",
                )
            self.policy = policy
        policy = self.policy
        if self.mode == "refuse" and policy is not None and evicts(policy):
            return CycleResult(
                market,
                Outcome.FAILED,
                reason=f"redis: maxmemory-policy {policy} may evict snapshot keys",
                problem=ProblemKind.CONFIGURATION,
                retryable=False,
            )
        return None
