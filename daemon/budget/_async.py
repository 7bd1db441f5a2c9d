"""The Redis-shared weight budget. The asyncio source is hand-written; ``_sync.py`` is
generated from it by scripts/unasync.py."""

from __future__ import annotations

import asyncio  # unasync: remove
import logging
import time
from typing import Any

import redis
import redis.asyncio  # unasync: remove
from redis.exceptions import NoScriptError, ResponseError

from daemon.budget.errors import Banned, BudgetExhausted, BudgetUnavailable, BudgetValueError
from daemon.budget.keys import BudgetKeys, budget_keys, check_account
from daemon.budget.limits import parse_rate_limits, parse_usage_headers
from daemon.budget.local import BanMemory, LocalLimiter
from daemon.budget.options import (
    MAX_OFFSET_MS,
    OFFSET_TTL_MS,
    REDIS_DOWN,
    REDIS_RETRY_S,
    BudgetOptions,
    Headers,
    connection_for,
)
from daemon.budget.plan import (
    Charge,
    LimitTable,
    Plan,
    PlanCache,
    acquire_args,
    ban_args,
    ban_seconds,
    ban_text,
    jitter_seconds,
    observe_args,
    usage_args,
    usage_from,
)
from daemon.budget.results import (
    Attempt,
    BanReport,
    BudgetStats,
    BudgetUsage,
    Counters,
    Grant,
    shared_from,
)
from daemon.budget.script import BANNED, GRANTED, OFFSET, SCRIPTS_BY_SHA
from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import MARKETS, Loaded, Settings
from daemon.contract.keys import keys_for, market_keys
from daemon.redis import clients as connections
from daemon.redis.clients import ConnectionConfig, check_one_slot

log = logging.getLogger("symbold.budget")
_make_clients = connections.AsyncClients  # unasync: _make_clients = connections.SyncClient


async def store_time_offset(client: redis.asyncio.Redis, key: str, offset_ms: int) -> None:
    """Store Binance-minus-Redis time (ms) under `key` (``BudgetKeys.time_offset``) for a day.

    Prefer :meth:`AsyncWeightBudget.record_server_time`, which measures the offset against the
    Redis server's own clock in the same step.
    """
    await client.set(key, str(int(offset_ms)), px=OFFSET_TTL_MS)


async def _send_packed(client: redis.asyncio.Redis, packed: bytes) -> Any:
    # The hot path: the command was encoded once (Plan.packed), so redis-py's per-call
    # argument encoding and option handling are skipped; same pool, same connections, same
    # health check. No retry here: after a connection error (not a timeout) the caller
    # falls back to the client's own path, which has the configured retry.
    # Any: the two flavours of redis-py type these calls differently (some untyped).
    pool: Any = client.connection_pool
    conn: Any = await pool.get_connection()
    try:
        await conn.send_packed_command((packed,))
        return await conn.read_response()
    except ResponseError:
        raise  # an error reply was read whole: the connection is clean
    except BaseException:
        await conn.disconnect()  # a reply may be left unread on it
        raise
    finally:
        await pool.release(conn)


class AsyncWeightBudget:
    """One market's Binance request-weight budget, shared through Redis by every process.

    :class:`~daemon.budget.WeightBudget` (blocking) and :class:`~daemon.budget.AsyncWeightBudget`
    are twins generated from one source: same methods, same rules.

    The asyncio one serves the tasks of any event loop (one client per loop, created on
    first use; close it in each loop); the blocking one serves every thread of a process and
    reconnects in a forked child. What a caller may rely on:

    - :meth:`acquire` charges every applicable window in one script run (all or nothing),
      timed by the Redis server's clock plus the stored offset to Binance's clock;
    - while a 429/418 deadline stands, :meth:`acquire` raises :class:`Banned` at once;
    - with Redis unreachable the configured policy applies (``local`` or ``fail_closed``);
      the budget is never unlimited.
    """

    def __init__(
        self,
        config: ConnectionConfig,
        settings: Settings | None = None,
        *,
        market: str = "spot",
        account: str | None = None,
        options: BudgetOptions | None = None,
    ) -> None:
        settings = settings if settings is not None else Settings()
        prefix = settings.redis.key_prefix
        mkeys = keys_for(settings, market) if market in MARKETS else market_keys(market, prefix)
        self.market = market
        self.keys: BudgetKeys = budget_keys(mkeys, prefix)
        if config.mode == "cluster":
            check_one_slot(f"budget of {market}", (*self.keys.all_fixed(), self.keys.meta))
        self.options = (
            options if options is not None else BudgetOptions.from_settings(settings, market)
        )
        self.account = check_account(account) if account is not None else None
        self._clients = _make_clients(config, decode=False)
        self._table = LimitTable.build(self.keys, self.options, ())
        self._plans = PlanCache(self._table)
        self._limits_due = 0.0
        self._local = LocalLimiter(self.options.expected_processes)
        self._counters = Counters()
        self._ban = BanMemory()
        self._down_until = 0.0

    @classmethod
    def from_settings(
        cls, loaded: Loaded | None = None, *, market: str = "spot", account: str | None = None
    ) -> AsyncWeightBudget:
        """A budget on the Redis the daemon uses (same settings file, same URL order)."""
        loaded, config = connection_for(loaded)
        return cls(config, loaded.settings, market=market, account=account)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        settings: Settings | None = None,
        market: str = "spot",
        account: str | None = None,
    ) -> AsyncWeightBudget:
        """A budget on `url`; [budget] options and key names from `settings` (or defaults)."""
        settings = settings if settings is not None else Settings()
        config = ConnectionConfig(url=parse_redis_url(url, "argument"), settings=settings.redis)
        return cls(config, settings, market=market, account=account)

    # -- plumbing ---------------------------------------------------------------------------

    async def _eval(self, args: tuple[Any, ...], packed: bytes | None = None) -> Any:
        client = self._clients.get()
        try:
            if packed is not None and isinstance(client, redis.asyncio.Redis):
                try:
                    return await _send_packed(client, packed)
                except redis.TimeoutError:
                    raise  # a whole socket timeout was waited already: the policy decides now
                except REDIS_DOWN:
                    pass  # e.g. a stale connection: the client's path reconnects and retries
            return await client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            # First use on this server, or it restarted: load and run again.
            await client.script_load(SCRIPTS_BY_SHA[args[0]].source)
            return await client.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]

    @property
    def limits(self) -> LimitTable:
        """The limits and caps in force (as of the last reread of the meta hash)."""
        return self._table

    async def _limits(self) -> LimitTable:
        now = time.monotonic()
        if now < self._limits_due or now < self._down_until:
            return self._table
        self._limits_due = now + self.options.limits_refresh
        try:
            raw = await self._clients.get().execute_command("HGET", self.keys.meta, "rate_limits")  # type: ignore[no-untyped-call]
        except REDIS_DOWN:
            return self._table
        table = LimitTable.build(self.keys, self.options, parse_rate_limits(raw))
        if table != self._table:
            log.info(
                "budget %s: limits (%s): %s",
                self.market,
                table.source,
                ", ".join(f"{c.limit.label}={c.limit.limit}" for c in table.caps),
            )
            self._table = table
            self._plans = PlanCache(table)
        return table

    def stats(self) -> BudgetStats:
        """Counters of this object: grants, waits, denials, bans, local grants, Redis errors."""
        return self._counters.snapshot()

    # -- acquire ----------------------------------------------------------------------------

    async def acquire(
        self,
        weight: int,
        *,
        priority: str = "normal",
        wait: bool = True,
        timeout: float | None = None,
        orders: int = 0,
        account: str | None = None,
    ) -> Grant:
        """Charge `weight` (and `orders` orders of `account`) to every current window.

        Waits for the blocking window to roll (plus jitter) when `wait`, for at most
        `timeout` seconds and never more than ``max_wait``; raises :class:`BudgetExhausted`
        (``reset_at``) instead when that wait would be too long, or at once without `wait`.
        Raises :class:`Banned` during a 429/418 deadline, :class:`BudgetUnavailable` with
        Redis down under ``fail_closed``, :class:`BudgetValueError` for impossible input.
        """
        account = account if account is not None else self.account
        table = await self._limits()
        plan = self._plans.get(table, weight, priority, orders, account)
        if (banned := self._ban.current()) is not None:
            self._counters.add("bans")
            raise Banned(banned, self.market)
        allowed = self.options.max_wait if timeout is None else min(timeout, self.options.max_wait)
        deadline = time.monotonic() + max(0.0, allowed)
        while True:
            out = await self._try(plan, priority)
            if out.granted:
                self._counters.granted(weight, out.local)
                return Grant(weight, orders, priority, out.now_ms, account, out.local)
            iv = out.limit.interval_ms if out.limit is not None else 1000
            pause = max(0.0, (out.reset_ms - out.now_ms) / 1000.0) + jitter_seconds(iv)
            if not wait or time.monotonic() + pause > deadline:
                self._counters.add("denials")
                await self._note("denials")
                label = out.limit.label if out.limit is not None else ""
                raise BudgetExhausted(
                    out.reset_ms / 1000.0, weight, label, self.market, local=out.local
                )
            self._counters.add("waits")
            await self._note("waits")
            await asyncio.sleep(pause)

    async def _note(self, counter: str) -> None:
        # The shared counters (``budget:stats``) are written on slow paths only; losing one
        # to an outage is fine.
        if self._local.active or time.monotonic() < self._down_until:
            return
        try:
            await self._clients.get().execute_command("HINCRBY", self.keys.stats, counter, 1)  # type: ignore[no-untyped-call]
        except REDIS_DOWN:
            self._counters.add("redis_errors")

    async def shared_stats(self) -> dict[str, int]:
        """The counters every process sharing this budget adds to (``waits``, ``denials``,
        ``bans_reported``; 0 when none yet), read from Redis. Raises
        :class:`BudgetUnavailable` when Redis cannot be read."""
        try:
            raw = await self._clients.get().execute_command("HGETALL", self.keys.stats)  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            raise BudgetUnavailable(f"budget {self.market}: cannot read counters: {exc}") from exc
        return shared_from(raw)

    def forget_ban(self) -> None:
        """Drop this object's memory of a ban deadline: the next :meth:`acquire` asks Redis
        (which refuses while ``ban_until`` stands), so deleting the key lifts the ban."""
        self._ban.forget()

    async def _try(self, plan: Plan, priority: str) -> Attempt:
        charges = plan.charges
        if self._down_until and time.monotonic() < self._down_until:
            return self._fallback(None, charges, priority)
        args: tuple[Any, ...] = plan.args
        packed: bytes | None = plan.packed
        if self._local.active:  # first call after an outage: hand the local spends back
            poison, extra = self._local.handback(charges)
            args, packed = acquire_args(self.keys, charges, priority, poison, extra), None
        try:
            reply = await self._eval(args, packed)
        except REDIS_DOWN as exc:
            return self._fallback(exc, charges, priority)
        code, now_ms, reset = int(reply[0]), int(reply[1]), int(reply[2])
        if self._local.active:
            self._local.recovered()
            log.warning("budget %s: Redis is back; shared counting resumes", self.market)
        self._local.note_server_time(now_ms)
        if reset:
            self._counters.add("resets_seen")
            log.warning(
                "budget %s: no counters in Redis (restarted empty, or first use): the rest of "
                "the current short windows counts as spent",
                self.market,
            )
        if code == GRANTED:
            return Attempt(True, now_ms, 0, None, False)
        if code == BANNED:
            until = ban_text(reply[3]) or now_ms / 1000.0
            self._ban.remember(until, now_ms / 1000.0)
            self._counters.add("bans")
            raise Banned(until, self.market)
        return Attempt(False, now_ms, int(reply[3]), charges[int(reply[4]) - 1].caps.limit, False)

    def _fallback(self, exc: BaseException | None, charges: list[Charge], priority: str) -> Attempt:
        if exc is not None:
            self._counters.add("redis_errors")
            self._down_until = time.monotonic() + REDIS_RETRY_S
        if self.options.on_redis_down == "fail_closed":
            raise BudgetUnavailable(
                f"budget {self.market}: Redis unreachable and on_redis_down is fail_closed"
                + (f" ({type(exc).__name__}: {exc})" if exc is not None else "")
            ) from exc
        if not self._local.active:
            log.warning(
                "budget %s: Redis unreachable (%s); each process now allows 1/%d of each limit",
                self.market,
                type(exc).__name__ if exc is not None else "recent failure",
                self.options.expected_processes,
            )
        return self._local.attempt(charges, priority)

    # -- observe and report -----------------------------------------------------------------

    async def observe(
        self, headers: Headers, *, grant: Grant | None = None, account: str | None = None
    ) -> int:
        """Raise the shared counts to Binance's ``X-MBX-USED-WEIGHT-*``/``X-MBX-ORDER-COUNT-*``
        figures (never lowers them). With the request's `grant`, a figure is applied only while
        the window that held the grant is current. Returns the units added; Redis errors are
        counted and swallowed (reconciliation is best effort)."""
        figures = parse_usage_headers(headers)
        if not figures:
            return 0
        acct = grant.account if grant is not None and grant.account else account or self.account
        observed = self._table.observed(figures, acct)
        if not observed or time.monotonic() < self._down_until:
            return 0
        at = grant.at_ms if grant is not None and not grant.local else None
        try:
            reply = await self._eval(observe_args(self.keys, observed, at))
        except REDIS_DOWN:
            self._counters.add("redis_errors")
            return 0
        raised = sum(int(x) for x in reply[1:])
        if raised:
            self._counters.add("observed_raises", raised)
        return raised

    async def report_limited(
        self, status: int, headers_or_retry_after: Headers | float | str | None = None
    ) -> float:
        """Binance answered 429 or 418: store the shared deadline (now + Retry-After, else
        the configured fallback; at most 3 days; an existing later deadline is kept) in
        ``ban_until``. Returns the deadline (epoch s). Every process's ``acquire`` raises
        :class:`Banned` until then."""
        return (await self.record_ban(status, headers_or_retry_after)).until

    async def record_ban(
        self, status: int, headers_or_retry_after: Headers | float | str | None = None
    ) -> BanReport:
        """:meth:`report_limited`, saying also whether Redis holds the deadline (``stored``)
        and Binance's clock at that moment (``now``), so a caller that keeps its own copy of
        the deadline can derive it from the same figure instead of writing a second one."""
        seconds = ban_seconds(status, headers_or_retry_after, self.options.ban_fallback)
        self._counters.add("bans_reported")
        await self._note("bans_reported")
        stored = True
        try:
            reply = await self._eval(ban_args(self.keys, seconds))
            until, now = float(reply[1]), int(reply[2]) / 1000.0
        except REDIS_DOWN as exc:
            stored = False
            self._counters.add("redis_errors")
            now = self._local.now_ms() / 1000.0
            until = now + seconds
            log.warning("budget %s: cannot store the ban in Redis (%s)", self.market, exc)
        self._ban.remember(until, now)
        log.warning(
            "budget %s: Binance answered %d; no calls until %.3f (%.0f s)",
            self.market,
            status,
            until,
            until - now,
        )
        return BanReport(until, now, stored)

    # -- inspection and upkeep --------------------------------------------------------------

    async def usage(self) -> BudgetUsage:
        """Used and limit of each current window (ORDERS for the budget's default account),
        in one round trip. Raises :class:`BudgetUnavailable` when Redis cannot be read."""
        table = await self._limits()
        tracked = table.tracked(self.account)
        try:
            reply = await self._eval(usage_args(self.keys, tracked))
        except REDIS_DOWN as exc:
            raise BudgetUnavailable(f"budget {self.market}: cannot read usage: {exc}") from exc
        now = int(reply[0]) / 1000.0
        ban = ban_text(reply[1])
        return BudgetUsage(
            market=self.market,
            now=now,
            ban_until=ban if ban is not None and ban > now else None,
            windows=usage_from(reply, tracked),
            source=table.source,
        )

    async def record_server_time(self, server_time_ms: int) -> int:
        """Store Binance's clock offset to the Redis server's (``serverTime`` of a response
        just received, in ms); returns the offset in ms. The daemon calls this after each
        exchangeInfo fetch; every budget then times windows by Binance's clock. An offset
        over a day is returned but not stored (not a reading of Binance's clock)."""
        if isinstance(server_time_ms, bool) or not isinstance(server_time_ms, int):
            raise BudgetValueError(f"server_time_ms must be an int, got {server_time_ms!r}")
        key, ttl = self.keys.time_offset, OFFSET_TTL_MS
        offset = int(await self._eval((OFFSET.sha, 1, key, server_time_ms, ttl, MAX_OFFSET_MS)))
        if abs(offset) > 60_000:
            kept = "not stored" if abs(offset) > MAX_OFFSET_MS else "stored"
            log.warning("budget %s: clocks differ by %d ms (%s)", self.market, offset, kept)
        return offset

    async def start_fresh(self) -> None:
        """Declare that nothing was spent in the current windows (first deployment, tests):
        without it, a budget whose counters are missing writes off the current short windows."""
        await self._clients.get().set(self.keys.lost, "0")

    async def start_fresh_if_new(self) -> bool:
        """:meth:`start_fresh` only where this budget never counted (no ``budget:lost``
        marker; one SET NX). True when it did; False when a marker exists or Redis is down."""
        try:
            return bool(await self._clients.get().set(self.keys.lost, "0", nx=True))
        except REDIS_DOWN:
            return False

    async def aclose(self) -> None:
        """Close this loop's connections (call in the loop that used the budget)."""
        await self._clients.aclose()

    async def __aenter__(self) -> AsyncWeightBudget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
