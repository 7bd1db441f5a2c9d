"""Redis key names of one market's budget. Every name carries the market's ``{market}`` hash
tag (the same slot as the snapshot keys), so one script may touch all of them on a Cluster.

- ``ban_until``: the daemon's own key (:mod:`daemon.contract.keys`, overrides honoured): the
  deadline of a 429/418 in epoch seconds, as text with three decimals, expiring at the deadline.
- ``<prefix>:{<market>}:time_offset``: Binance server time minus Redis server time, in
  milliseconds (integer text; absent means 0). Written by :meth:`record_server_time`.
- ``<prefix>:{<market>}:budget:lost``: when (ms, Binance clock) this Redis last came up without
  budget counters; ``0`` when nothing is known to be lost. Absent means "lost just now"
  (a restarted Redis without persistence, or the first use ever).
- ``<prefix>:{<market>}:budget:weight:<n><unit>`` (REQUEST_WEIGHT), ``...:raw:<n><unit>``
  (RAW_REQUESTS), ``...:orders:<account>:<n><unit>`` (ORDERS): hashes ``s`` (window start, ms)
  and ``u`` (units used in that window), expiring one minute after their window.
- ``<prefix>:{<market>}:budget:stats``: hash of counters summed over every process, written
  on slow paths only: ``waits``, ``denials``, ``bans_reported`` (never expires).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from daemon.budget.errors import BudgetValueError
from daemon.budget.limits import Limit
from daemon.contract.keys import MarketKeys

_ACCOUNT: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SHORT: Final = {"REQUEST_WEIGHT": "weight", "RAW_REQUESTS": "raw", "ORDERS": "orders"}


def check_account(account: str) -> str:
    """Account names become part of key names: letters, digits, ``_ . -``, 1-64 characters."""
    if not isinstance(account, str) or _ACCOUNT.match(account) is None:
        raise BudgetValueError(f"account name {account!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    return account


class BudgetKeys(msgspec.Struct, frozen=True):
    market: str
    base: str
    """``<prefix>:{<market>}``: every budget key starts with it."""
    ban_until: str
    time_offset: str
    lost: str
    meta: str
    stats: str

    def limit_key(self, limit: Limit, account: str | None = None) -> str:
        short = _SHORT[limit.kind]
        if limit.kind == "ORDERS":
            if account is None:
                raise BudgetValueError(f"{limit.label} is counted per account: name one")
            short = f"orders:{check_account(account)}"
        return f"{self.base}:budget:{short}:{limit.suffix.lower()}"

    def all_fixed(self) -> tuple[str, ...]:
        return (self.ban_until, self.time_offset, self.lost, self.stats)


def budget_keys(keys: MarketKeys, prefix: str) -> BudgetKeys:
    """The budget's keys for the market of `keys` (its ``ban_until`` and ``meta`` names are
    used as they are, so legacy overrides keep working)."""
    base = f"{prefix}:{{{keys.market}}}"
    return BudgetKeys(
        market=keys.market,
        base=base,
        ban_until=keys.ban_until,
        time_offset=f"{base}:time_offset",
        lost=f"{base}:budget:lost",
        meta=keys.meta,
        stats=f"{base}:budget:stats",
    )
