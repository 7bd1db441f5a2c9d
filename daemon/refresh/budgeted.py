"""The daemon's own exchangeInfo fetches, drawn from the shared request-weight budget.

:func:`fetch_with_budget` is :func:`daemon.upstream.fetch.fetch` with the budget around each
HTTP attempt. What a caller may rely on:

- Before each HTTP attempt (one per base URL tried) the endpoint's weight is acquired at
  priority ``normal`` (spot ``/api/v3/exchangeInfo`` 20, USD-M ``/fapi/v1`` and COIN-M
  ``/dapi/v1`` exchangeInfo 1, from :mod:`daemon.budget.weights`; an unknown path costs the
  budget's ``default_weight``). A ``file:`` source spends nothing and is not timed.
- Hosts are tried in order with the same policy as ``fetch`` (next host after a connection
  error, timeout, 5xx, bad body, unexpected status or unreadable file; stop at once on
  429/418, 403, 451, an oversized body); errors keep ``.attempts`` as ``fetch`` sets them.
- After an HTTP answer the usage figures are observed (``X-MBX-USED-WEIGHT-*``,
  ``X-MBX-ORDER-COUNT-*``). After a 200, Binance's clock is recorded for every budget:
  ``serverTime`` of the payload, else the ``Date`` header. Both are taken when the body has
  arrived, so the recorded clock runs a little late, never early: windows then roll a little
  after Binance's, the safe side.
- 429/418: the deadline is stored once, by the budget (``ban_until``, the same key the
  daemon reads; a later deadline already stored is kept). The error raised is
  :class:`SharedBan` (a :class:`~daemon.upstream.fetch.RateLimited`) whose ``retry_after`` is
  measured to that stored deadline; the caller must not store the ban again. When Redis
  could not take it, the plain ``RateLimited`` is raised and the caller stores it as before.
- A ban already stored (:class:`~daemon.budget.Banned`) or a budget with no room within
  `max_wait` (:class:`~daemon.budget.BudgetExhausted`) sends nothing and raises
  :class:`FetchDeferred` with ``until`` and ``wait``: "skipped, retry at T", like a stored
  ban. `max_wait` defaults to ``[budget] max_wait``; the refresh cycle passes 0 (never wait:
  a full window is a skipped cycle). Redis down under ``fail_closed``
  (:class:`~daemon.budget.BudgetUnavailable`) raises :class:`BudgetDown`, a retryable
  upstream failure; under ``local`` the per-process share is used, and when that share
  refuses (``BudgetExhausted.local``) the attempt goes out uncharged with a warning: Redis
  is the problem then, and the cycle must meet it and report it (``redis_down``,
  ``redis.write_refused``) instead of reporting a full budget.
- The ban deadline in Redis is the authority: a deadline the budget object only remembers
  from earlier is dropped first (:meth:`~daemon.budget.AsyncWeightBudget.forget_ban`), so
  deleting ``ban_until`` lifts a ban for the daemon as the cycle promises.
- `cold` (nothing is being served: no snapshot in Redis, none in memory): a budget that
  never counted on this Redis (no ``budget:lost`` marker: a first deployment, or a Redis
  that lost everything while no daemon held a snapshot) is declared fresh first
  (:meth:`~daemon.budget.AsyncWeightBudget.start_fresh_if_new`) instead of writing off the
  current minute, so a first start publishes at once and keeps refreshing. A budget with a
  marker keeps every rule: a daemon holding a snapshot when Redis comes back empty skips
  fetches for the rest of the written-off window and republishes what it holds.
- With ``budget=None`` it is exactly ``fetch``. Budget bookkeeping after an answer
  (observe, the clock) never turns a good fetch into a failure: Redis errors there are logged.

Headers: ``fetch`` does not hand back response headers today. When ``FetchResult`` (and
``UpstreamError``) carry a ``headers`` attribute (a mapping or (name, value) pairs), every
usage header and ``Date`` are used; without it the ``X-MBX-USED-WEIGHT-1M`` figure
(``used_weight``) is observed and the clock comes from ``serverTime`` alone.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import logging
import re
import time
from collections.abc import Iterable, Mapping
from typing import Final

import aiohttp
import redis

from daemon.budget import (
    AsyncWeightBudget,
    Banned,
    BudgetExhausted,
    BudgetUnavailable,
    Grant,
)
from daemon.budget.weights import EndpointWeights
from daemon.upstream.fetch import (
    USED_WEIGHT_HEADER,
    AllHostsFailed,
    FetchResult,
    HostFailure,
    RateLimited,
    SourceConfig,
    UpstreamError,
    fetch,
)

log = logging.getLogger("symbold.refresh.budget")

PRIORITY: Final = "normal"
# serverTime is the second key of Binance's reply; look only at the start of a 17 MB body.
_HEAD_BYTES: Final = 4096
_SERVER_TIME: Final = re.compile(rb'"serverTime"\s*:\s*(\d{10,16})\b')

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class FetchDeferred(UpstreamError):
    """Nothing was sent: the shared budget says not before ``until`` (epoch s).

    ``wait`` is the seconds from now to ``until``; ``reason`` is ``rate-limit ban`` (a stored
    429/418 deadline) or ``weight budget exhausted`` (the window has no room). A refresh cycle
    reports it as skipped, to be retried after ``wait``.
    """

    kind = "budget_wait"

    def __init__(self, reason: str, until: float, *, limit: str = "") -> None:
        self.until = until
        self.wait = max(0.0, until - time.time())
        self.reason = reason
        detail = f" ({limit})" if limit else ""
        super().__init__(f"{reason}{detail}: not before {until:.3f} (in {self.wait:.1f} s)")


class BudgetDown(UpstreamError):
    """Redis is unreachable and ``[budget] on_redis_down`` is ``fail_closed``: not sent."""

    kind = "budget_unavailable"


class SharedBan(RateLimited):
    """A 429/418 whose deadline the budget stored in ``ban_until``: do not store it again.

    ``until`` is that stored deadline (epoch s, Binance's clock) and ``retry_after`` the
    seconds to it as measured when it was stored.
    """

    def __init__(self, err: RateLimited, until: float, retry_after: float) -> None:
        super().__init__(
            err.message,
            url=err.url,
            status=err.status if err.status is not None else 429,
            used_weight=err.used_weight,
            retry_after=retry_after,
        )
        self.until = until
        self.attempts = err.attempts
        self.headers = getattr(err, "headers", None)


@functools.lru_cache(maxsize=8)
def _weights(default_weight: int) -> EndpointWeights:
    return EndpointWeights(default_weight)


def endpoint_weight(cfg: SourceConfig, default_weight: int = 10) -> int:
    """The request weight one HTTP attempt of `cfg` costs (GET ``cfg.path``)."""
    return _weights(default_weight).cost("GET", cfg.path, dict(cfg.query)).weight


def _is_file(base: str) -> bool:
    return base[:5].lower() == "file:"


def response_headers(answer: FetchResult | UpstreamError) -> list[tuple[str, str]]:
    """The response headers of `answer` as (name, value) pairs: its ``headers`` attribute
    when ``fetch`` provides one, else ``X-MBX-USED-WEIGHT-1M`` rebuilt from ``used_weight``."""
    raw = getattr(answer, "headers", None)
    if raw is not None:
        items = raw.items() if isinstance(raw, Mapping) else raw
        return [(str(k), str(v)) for k, v in items]
    if answer.used_weight is not None:
        return [(USED_WEIGHT_HEADER, str(answer.used_weight))]
    return []


def server_time_ms(body: bytes, headers: Headers = ()) -> int | None:
    """Binance's clock from a 200 answer, in ms: the payload's ``serverTime`` (looked for in
    its first 4 KB), else the ``Date`` header (whole seconds, rounded down); None when
    neither is readable."""
    match = _SERVER_TIME.search(body, 0, _HEAD_BYTES)
    if match is not None:
        return int(match.group(1))
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name.lower() == "date":
            try:
                return int(email.utils.parsedate_to_datetime(value).timestamp()) * 1000
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
    return None


async def fetch_with_budget(
    budget: AsyncWeightBudget | None,
    session: aiohttp.ClientSession,
    cfg: SourceConfig,
    *,
    max_wait: float | None = None,
    cold: bool = False,
) -> FetchResult:
    """Fetch exchangeInfo as :func:`~daemon.upstream.fetch.fetch` does, charging each HTTP
    attempt to `budget`; wait at most `max_wait` seconds for room (default ``[budget]
    max_wait``; 0: not at all). See the module docstring for every rule."""
    if budget is None:
        return await fetch(session, cfg)
    weight = endpoint_weight(cfg, budget.options.default_weight)
    budget.forget_ban()
    if cold:
        await budget.start_fresh_if_new()
    failures: list[HostFailure] = []
    for base in cfg.base_urls:
        one = dataclasses.replace(cfg, base_urls=(base,))
        http = not _is_file(base)
        grant = await _acquire(budget, weight, max_wait) if http else None
        try:
            result = await fetch(session, one)
        except AllHostsFailed as err:  # this one host failed in a way worth the next one
            if http:
                await _observe(budget, err, grant)
            failures.extend(err.failures)
            continue
        except RateLimited as err:
            err.attempts = (*failures, *err.attempts)
            await _observe(budget, err, grant)
            raise await _shared_ban(budget, err) from None
        except UpstreamError as err:
            err.attempts = (*failures, *err.attempts)
            if http:
                await _observe(budget, err, grant)
            raise
        if http:
            await _after_success(budget, result, grant)
        return dataclasses.replace(result, attempts=tuple(failures))
    raise AllHostsFailed(tuple(failures))


async def _acquire(budget: AsyncWeightBudget, weight: int, max_wait: float | None) -> Grant | None:
    try:
        if max_wait is None:
            return await budget.acquire(weight, priority=PRIORITY)
        return await budget.acquire(
            weight, priority=PRIORITY, wait=max_wait > 0, timeout=max(0.0, max_wait)
        )
    except Banned as exc:
        raise FetchDeferred("rate-limit ban", exc.until) from None
    except BudgetExhausted as exc:
        if exc.local:
            # The budget cannot use Redis (refusing writes, paused, gone) and its per-process
            # fallback said no. The cycle would meet the same Redis problem and must report
            # it (redis_down, redis.write_refused), not hide it behind "budget exhausted".
            log.warning(
                "budget %s: Redis unusable and the local share is spent; fetching uncharged",
                budget.market,
            )
            return None
        raise FetchDeferred("weight budget exhausted", exc.reset_at, limit=exc.limit) from None
    except BudgetUnavailable as exc:
        raise BudgetDown(str(exc)) from None


async def _observe(
    budget: AsyncWeightBudget, answer: FetchResult | UpstreamError, grant: Grant | None
) -> None:
    headers = response_headers(answer)
    if headers:
        await budget.observe(headers, grant=grant)  # swallows Redis outages itself


async def _after_success(
    budget: AsyncWeightBudget, result: FetchResult, grant: Grant | None
) -> None:
    await _observe(budget, result, grant)
    server_ms = server_time_ms(result.body, response_headers(result))
    if server_ms is None:
        return
    try:
        await budget.record_server_time(server_ms)
    except (redis.RedisError, OSError) as exc:
        log.warning("budget %s: cannot record Binance's clock: %s", budget.market, exc)


async def _shared_ban(budget: AsyncWeightBudget, err: RateLimited) -> RateLimited:
    status = err.status if err.status in (418, 429) else 429
    report = await budget.record_ban(status, err.retry_after)
    if not report.stored:
        return err  # Redis did not take it: the caller stores it as it always has
    return SharedBan(err, report.until, max(0.0, report.until - report.now))
