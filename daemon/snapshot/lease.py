"""Per-market leadership among several daemons sharing one Redis.

One key per market holds the leader's token (``SET NX PX``). The leader renews it well before
it expires and deletes it on a clean stop; a follower takes it once it expires, so a leader
killed with -9 or frozen with SIGSTOP is replaced within ``ttl`` plus one poll.

Leadership alone cannot stop a leader that was frozen and wakes up believing it still leads,
so every snapshot write is *fenced*: the store WATCHes the lease key and checks it still holds
this daemon's token inside the same transaction (:class:`Fence`). A stale leader's write is
refused by Redis, not by the stale leader's own judgement.

A lease key without a TTL was not written by a symbold leader (every lease is set with PX): left
alone it would stop every daemon for ever. A daemon that finds the same holder without a TTL
for longer than one lease ttl treats it as broken, logs it at error and takes it over
(atomically, only if it is still that holder without a TTL).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

import redis
import redis.asyncio

from daemon.logs import get_logger, scrub_text

# Extend only if the key still holds our token; take it back if it vanished (a Redis that
# restarted empty): nobody else holds it then. Returns 1 when we hold it afterwards.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Take over a lease with no TTL, only if it still holds the value we saw and still has no TTL.
_TAKE_BROKEN = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# Delete only our own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Fence:
    """What a fenced write checks: `key` must still hold `token` (or be vacant, in which case
    the write claims it for `ttl_ms` in the same transaction)."""

    key: str
    token: bytes
    ttl_ms: int


class LeaseLost(Exception):
    """A fenced write found that this daemon no longer holds the lease."""


def new_token() -> str:
    """``host:pid:random``: unique, and readable in `symbold status`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Lease:
    """One market's lease as seen by one daemon."""

    def __init__(
        self, client: redis.asyncio.Redis, key: str, *, ttl: float, token: str | None = None
    ) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        self.token = token or new_token()
        self.held = False
        # Monotonic time of the last confirmation that we hold it (acquire or renew).
        self.confirmed_at = 0.0
        # A holder seen without a TTL, and since when (monotonic): see try_acquire.
        self._broken: tuple[bytes, float] | None = None
        self.log = get_logger("symbold.lease").bind(key=key)

    @property
    def fence(self) -> Fence:
        return Fence(self.key, self.token.encode(), self.ttl_ms)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it, or if a holder without a TTL (not a symbold
        leader's lease, which always expires) has stayed so for more than one ttl. Redis
        errors propagate."""
        taken = await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms)
        if taken:
            self._broken = None
            self._confirm()
            self.log.info("lease.acquired", token=self.token)
            return True
        return await self._take_if_broken()

    async def _take_if_broken(self) -> bool:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.key)
        pipe.pttl(self.key)
        holder, pttl = await pipe.execute()
        if holder is None or pttl != -1:
            self._broken = None
            return False
        raw = holder if isinstance(holder, bytes) else str(holder).encode()
        now = time.monotonic()
        if self._broken is None or self._broken[0] != raw:
            self._broken = (raw, now)
            self.log.error(
                "lease.no_ttl",
                holder=scrub_text(raw.decode(errors="replace")[:100]),
                action=f"taking it over in {self.ttl:g} s unless it gets a TTL",
            )
            return False
        if now - self._broken[1] < self.ttl:
            return False
        taken = await self.client.eval(_TAKE_BROKEN, 1, self.key, raw, self.token, self.ttl_ms)
        if not taken:
            return False
        self._broken = None
        self._confirm()
        self.log.error(
            "lease.taken_over",
            holder=scrub_text(raw.decode(errors="replace")[:100]),
            token=self.token,
            reason="the lease had no TTL for longer than its ttl: broken or foreign",
        )
        return True

    async def renew(self) -> bool:
        """Extend our lease; False (and not held) if someone else has it now."""
        extended = await self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
        if extended:
            self._confirm()
            return True
        if self.held:
            self.log.warning("lease.lost", token=self.token)
        self.held = False
        return False

    def expired_locally(self) -> bool:
        """True when we could not confirm the lease for a whole ttl (e.g. Redis unreachable):
        by now another daemon may hold it, so we must stop acting as leader."""
        return self.held and time.monotonic() - self.confirmed_at >= self.ttl

    async def release(self) -> None:
        """Give the lease up at once (clean shutdown), if it is still ours."""
        if not self.held:
            return
        self.held = False
        try:
            await self.client.eval(_RELEASE, 1, self.key, self.token)
        except (redis.RedisError, OSError) as exc:
            self.log.warning("lease.release_failed", error=scrub_text(str(exc)))
        else:
            self.log.info("lease.released", token=self.token)

    async def holder(self) -> str | None:
        value = await self.client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def _confirm(self) -> None:
        self.held = True
        self.confirmed_at = time.monotonic()
