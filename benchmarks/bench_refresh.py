"""Refresh benchmark: what one refresh cycle costs a deployment, against floors, in one run.

Every case fetches a spot exchangeInfo payload from a fake Binance over loopback HTTP (aiohttp
server in a child process, gzip as Binance sends it) and writes into a private redis-server,
on uvloop, with the lease on as in production (the writes are fenced by the lease token).
Two payload sizes: the recorded 2023-09 payload (3.6 MB) and the modern size (the same rows
with 440 permission groups each, about 17 MB, generated at run time by make_payload.py). A
variant of each payload differs in one row (one tickSize).

The cases, each in its own Redis database:

- ``symbold first cycle, empty Redis``: a new refresher (nothing in memory) over an emptied
  database, lease just taken: what a daemon's first cycle costs on a new or wiped Redis.
- ``symbold restart, Redis kept, same content``: a new refresher while Redis holds the very
  snapshot it fetches (written by the previous run, with its ``meta:rows``; the warm-up runs
  add the rows-region digest to it): what every restart pays. The floors do not write
  ``meta:rows``; symbold's ratios include it.
- ``symbold restart, Redis kept, one row changed``: the same, but the payload differs from the
  stored snapshot in one row.
- ``symbold steady, one row changed`` / ``symbold steady, no change``: one long-lived
  refresher, the payload alternating between the two variants, or always the same.
- ``floor, full``: the least a correct first cycle does: read the ban deadline and the stored
  version (one round trip), fetch, msgspec decode of every row, the same field extraction
  (same record fields, permission lists decoded once per distinct list), the same listing
  (status filter, pinned, quote rank, symbol), a content version, then one fenced MULTI
  (WATCH + GET of the lease) writing the list twice, the per-symbol hash, refreshed_at, meta,
  a counter and the change event, into an emptied database.
- ``floor, incremental, one row changed`` / ``no change``: the same, but rows whose bytes did
  not change since the previous payload are not decoded again, and the fenced MULTI (which
  also WATCHes meta and checks the stored version, as an incremental write must) sends only the
  changed rows, the list if it changed (else renews its expiry), refreshed_at, meta, a counter,
  and the change event and stream entry. It sends a changed list whole, where symbold patches
  rows of unchanged length in place (SETRANGE): part of symbold's steady ratio is that.
- ``seed-style``: the legacy warm-up: stdlib ``json.loads``, TRADING rows sorted, a few fields
  picked into dicts, ``json.dumps``, then three SETs and an INCR on a synchronous client (no
  lease: it had none).

Inflating: every case inflates the gzip reply with zlib-ng (the daemon in its fetch, the floors
and seed-style through aiohttp, set to the same library): the fastest inflater available is
part of the floor, not an advantage of one side.

Timing: CPU time of this process (the client side, including redis-py's command packing) and
wall time, per run; the cases run interleaved (round i of every case, in an order that rotates
each round), the garbage collector on, a full collection before each run off the clock. A 1 ms
ticker task runs in the same loop during every run: its latest wake-up is the longest stall of
the event loop. Ratios are the median over rounds of the per-round ratio (p25..p75 shown).

Memory (modern size): each case once more in a child process of its own, so the cases do not
pollute each other: RSS idle after set-up, the peak (VmHWM) during a measured cycle, and the
RSS retained after it (garbage collected), all relative to the idle process before any cycle.

Targets are reported as met/MISSED, never turned into a failure.

``python -m benchmarks refresh [--rounds N] [--warmup N] [--modern-rounds N] [--no-modern]
[--no-rss] [--gzip never]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis
import redis.asyncio
import zlib_ng.zlib_ng
from redis.asyncio.client import Pipeline

from benchmarks.common import (
    FIXTURES_DIR,
    MAKE_PAYLOAD,
    Clock,
    PayloadServer,
    Sample,
    Ticker,
    daemon_logging_to_devnull,
    loop_name,
    machine,
    make_payload,
    mib,
    private_redis,
    proc_status,
    python_version,
    reset_peak,
    run_async,
    skipped,
    symbold_client,
    symbold_keys,
    symbold_lead,
    symbold_point_at,
    symbold_refresher,
    symbold_session,
    symbold_settings,
    table,
    variant_of,
)

FIXTURE = "spot-exchangeinfo-2023-09.json"
PERMISSION_GROUPS = 440
SPOT = "/api/v3/exchangeInfo"

DEFAULT_ROUNDS = 21
DEFAULT_MODERN_ROUNDS = 21
DEFAULT_WARMUP = 2

# Targets (reported, never enforced).
STEADY_VS_INCREMENTAL = 1.3
FIRST_VS_FULL = 1.5
RESTART_VS_STEADY = 1.5
STALL_STEADY_MS = 10.0
STALL_FIRST_MS = 20.0
PEAK_PAYLOADS = 2.0
RETAINED_PAYLOADS = 1.0

FIRST = "symbold first cycle, empty Redis"
RESTART_SAME = "symbold restart, Redis kept, same content"
RESTART_CHANGED = "symbold restart, Redis kept, one row changed"
STEADY_CHANGED = "symbold steady, one row changed"
STEADY_SAME = "symbold steady, no change"
FLOOR_FULL = "floor, full (empty Redis)"
FLOOR_CHANGED = "floor, incremental, one row changed"
FLOOR_SAME = "floor, incremental, no change"
SEED = "seed-style (json, 3 SET + INCR, sync)"
CASES = (
    FIRST,
    RESTART_SAME,
    RESTART_CHANGED,
    STEADY_CHANGED,
    STEADY_SAME,
    FLOOR_FULL,
    FLOOR_CHANGED,
    FLOOR_SAME,
    SEED,
)
SYMBOLD_CASES = CASES[:5]
DB = {name: n + 1 for n, name in enumerate(CASES)}
DB_RSS = len(CASES) + 1


# ---------------------------------------------------------------------------------------------
# inputs


class _Status(msgspec.Struct):
    status: str = ""


class _StatusRows(msgspec.Struct):
    symbols: list[_Status]


@dataclass(frozen=True, slots=True)
class Size:
    """One payload size: the payload and its one-row variant, as files the server reads."""

    label: str
    a: Path
    b: Path
    bytes: int
    symbols: int
    trading: int

    @property
    def paths(self) -> tuple[str, str]:
        return (f"/{self.label}/a{SPOT}", f"/{self.label}/b{SPOT}")


def describe(label: str, a: Path, tmp: Path) -> Size:
    data = a.read_bytes()
    b = tmp / f"{label}-variant.json"
    b.write_bytes(variant_of(data))
    rows = msgspec.json.decode(data, type=_StatusRows).symbols
    return Size(label, a, b, len(data), len(rows), sum(1 for r in rows if r.status == "TRADING"))


def prepare_sizes(tmp: Path, modern: bool) -> list[Size]:
    sizes = [describe("2023-09", FIXTURES_DIR / FIXTURE, tmp)]
    if modern:
        big = tmp / f"modern-{PERMISSION_GROUPS}.json"
        make_payload(FIXTURES_DIR / FIXTURE, big, "--permission-groups", str(PERMISSION_GROUPS))
        sizes.append(describe("modern", big, tmp))
    return sizes


# ---------------------------------------------------------------------------------------------
# the floors: field extraction, listing, version and fenced writes done plainly


_EMPTY = msgspec.Raw(b"[]")


class _Rows(msgspec.Struct):
    symbols: list[msgspec.Raw]


class _Row(msgspec.Struct, rename="camel", gc=False):
    symbol: str
    status: str = ""
    base_asset: str = ""
    quote_asset: str = ""
    order_types: tuple[str, ...] = ()
    permissions: msgspec.Raw = _EMPTY
    permission_sets: msgspec.Raw = _EMPTY
    filters: msgspec.Raw = _EMPTY
    contract_type: str | None = None
    delivery_date: int | None = None
    onboard_date: int | None = None
    margin_asset: str | None = None


class _Filter(msgspec.Struct, rename="camel", gc=False):
    filter_type: str
    tick_size: str | None = None
    min_price: str | None = None
    max_price: str | None = None
    step_size: str | None = None
    min_qty: str | None = None
    max_qty: str | None = None
    min_notional: str | None = None
    max_notional: str | None = None
    notional: str | None = None


class _Record(msgspec.Struct, gc=False):
    """The same fields symbold stores per symbol (so the floor writes as many bytes)."""

    symbol: str
    market: str
    status: str
    base: str
    quote: str
    tick_size: str | None
    min_price: str | None
    max_price: str | None
    step_size: str | None
    min_qty: str | None
    max_qty: str | None
    market_step_size: str | None
    market_min_qty: str | None
    market_max_qty: str | None
    min_notional: str | None
    max_notional: str | None
    permissions: tuple[str, ...]
    order_types: tuple[str, ...]
    filters: msgspec.Raw
    contract_type: str | None
    delivery_date: int | None
    onboard_date: int | None
    margin_asset: str | None


@dataclass(frozen=True, slots=True)
class _Entry:
    symbol: str
    status: str
    quote: str
    blob: bytes
    digest: bytes


def _larger(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    try:
        return b if Decimal(b) > Decimal(a) else a
    except InvalidOperation:
        return a


class Extractor:
    """Row bytes -> the stored record's JSON and digest (one market's decoders and caches)."""

    def __init__(self, market: str = "spot") -> None:
        self.market = market
        self.row = msgspec.json.Decoder(_Row)
        self.filters = msgspec.json.Decoder(list[_Filter])
        self.lists = msgspec.json.Decoder(list[Any])
        self.encode = msgspec.json.Encoder().encode
        self.permissions: dict[tuple[bytes, bytes], tuple[str, ...]] = {}

    def _permissions(self, row: _Row) -> tuple[str, ...]:
        key = (bytes(row.permissions), bytes(row.permission_sets))
        found = self.permissions.get(key)
        if found is None:
            names: set[str] = set()
            for blob in key:
                for item in self.lists.decode(blob):
                    names.update(item if isinstance(item, list) else (item,))
            found = self.permissions[key] = tuple(sorted(names))
        return found

    def __call__(self, raw: bytes | msgspec.Raw) -> _Entry:
        row = self.row.decode(raw)
        price = lot = market_lot = notional = old = None
        for f in self.filters.decode(row.filters):
            kind = f.filter_type
            if kind == "PRICE_FILTER" and price is None:
                price = f
            elif kind == "LOT_SIZE" and lot is None:
                lot = f
            elif kind == "MARKET_LOT_SIZE" and market_lot is None:
                market_lot = f
            elif kind == "NOTIONAL" and notional is None:
                notional = f
            elif kind == "MIN_NOTIONAL" and old is None:
                old = f
        record = _Record(
            row.symbol,
            self.market,
            row.status,
            row.base_asset,
            row.quote_asset,
            price.tick_size if price else None,
            price.min_price if price else None,
            price.max_price if price else None,
            lot.step_size if lot else None,
            lot.min_qty if lot else None,
            lot.max_qty if lot else None,
            market_lot.step_size if market_lot else None,
            market_lot.min_qty if market_lot else None,
            market_lot.max_qty if market_lot else None,
            _larger(
                notional.min_notional if notional else None,
                (old.min_notional or old.notional) if old else None,
            ),
            notional.max_notional if notional else None,
            self._permissions(row),
            row.order_types,
            row.filters,
            row.contract_type,
            row.delivery_date,
            row.onboard_date,
            row.margin_asset,
        )
        blob = self.encode(record)
        return _Entry(row.symbol, row.status, row.quote_asset, blob, hashlib.sha256(blob).digest())


@dataclass(frozen=True, slots=True)
class Listing:
    """Which statuses are listed, and in what order (the daemon's default spot settings)."""

    statuses: frozenset[str]
    quote_rank: dict[str, int]
    pinned: dict[str, int]
    cache_ttl: int

    @classmethod
    def defaults(cls) -> Listing:
        spot = symbold_settings().markets.spot
        return cls(
            frozenset(spot.list_statuses),
            {q: i for i, q in reversed(list(enumerate(spot.quote_priority)))},
            {s: i for i, s in reversed(list(enumerate(spot.pinned)))},
            spot.cache_ttl,
        )

    def order(self, entries: Sequence[_Entry]) -> list[_Entry]:
        unknown = len(self.quote_rank)
        pins: list[tuple[int, _Entry]] = []
        buckets: list[list[_Entry]] = [[] for _ in range(unknown + 1)]
        for e in entries:
            if e.status not in self.statuses:
                continue
            pin = self.pinned.get(e.symbol)
            if pin is not None:
                pins.append((pin, e))
            else:
                buckets[self.quote_rank.get(e.quote, unknown)].append(e)
        pins.sort(key=lambda p: p[0])
        out = [e for _, e in pins]
        for bucket in buckets:
            bucket.sort(key=lambda e: e.symbol)
            out.extend(bucket)
        return out


def _json_array(parts: list[bytes]) -> bytes:
    if len(parts) < 2:
        return b"[" + b"".join(parts) + b"]"
    return b",".join([b"[" + parts[0], *parts[1:-1], parts[-1] + b"]"])  # one copy


def _version(by_symbol: dict[str, _Entry], listed: list[_Entry]) -> str:
    names = sorted(by_symbol)
    h = hashlib.sha256(msgspec.json.encode((names, [e.symbol for e in listed])))
    h.update(b"".join([by_symbol[n].digest for n in names]))
    return h.hexdigest()[:32]


@dataclass
class FloorWriter:
    """What both floors share: fetch, the state read, and the fenced transaction."""

    client: redis.asyncio.Redis
    session: aiohttp.ClientSession
    url: str
    paths: tuple[str, str]
    alternate: bool
    keys: Any
    token: bytes
    listing: Listing

    async def fetch(self, i: int) -> bytes:
        path = self.paths[i % 2] if self.alternate else self.paths[0]
        # aiohttp inflates the body here, in the loop, as the floor always did (the daemon's
        # session leaves that to fetch, which inflates in a worker thread); with zlib-ng, as
        # the daemon does (see main).
        async with self.session.get(self.url + path, auto_decompress=True) as resp:
            resp.raise_for_status()
            return await resp.read()

    async def read_state(self) -> tuple[bytes | None, bytes | None]:
        """The ban deadline (honoured across restarts) and the stored version, one trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.ban_until)
        pipe.hget(self.keys.meta, "version")
        ban, version = await pipe.execute()
        if ban is not None and float(ban) > time.time():
            raise RuntimeError("floor: banned")
        return ban, version

    def meta(self, version: str, count: int, listed: int) -> dict[str, str]:
        return {
            "version": version,
            "count": str(count),
            "listed": str(listed),
            "source": self.url,
            "fetched_at": f"{time.time():.3f}",
            "stale": "0",
            "last_error": "",
            "writer": self.token.decode(),
        }

    async def transact(self, fill: Callable[[Pipeline], None], expect: str | None) -> bool:
        """One fenced MULTI: WATCH the lease (and meta when ``expect``), check the lease still
        holds our token (and meta ``expect``), then queue ``fill``. False when the stored
        version is not ``expect`` (the caller writes in full then)."""
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            await pipe.watch(k.leader, *((k.meta,) if expect is not None else ()))
            if await pipe.get(k.leader) != self.token:
                raise RuntimeError("floor: lease lost")
            if expect is not None:
                stored: bytes | None = await pipe.hget(k.meta, "version")  # type: ignore[assignment]
                if stored is None or stored.decode() != expect:
                    return False
            pipe.multi()  # type: ignore[no-untyped-call]
            fill(pipe)
            await pipe.execute()
        return True

    async def write_full(self, by_symbol: dict[str, _Entry], listed: list[_Entry]) -> str:
        k, ttl = self.keys, self.listing.cache_ttl
        version = _version(by_symbol, listed)
        symbols_json = _json_array([e.blob for e in listed])
        mapping = {name: e.blob for name, e in by_symbol.items()}
        meta = self.meta(version, len(by_symbol), len(listed))
        event = msgspec.json.encode({"market": k.market, "version": version})

        def fill(pipe: Pipeline) -> None:
            pipe.set(k.last_good, symbols_json)
            pipe.set(k.symbols, symbols_json, ex=ttl)
            pipe.delete(k.by_symbol)
            pipe.hset(k.by_symbol, mapping=mapping)  # type: ignore[arg-type]
            pipe.set(k.refreshed_at, meta["fetched_at"])
            pipe.hset(k.meta, mapping=meta)  # type: ignore[arg-type]
            pipe.hincrby(k.metrics, "refresh_success", 1)
            pipe.execute_command("PUBLISH", k.events, event)

        await self.transact(fill, None)
        return version


@dataclass
class FloorFull:
    """A first cycle done plainly: every row decoded, everything written (empty Redis)."""

    writer: FloorWriter
    sync: redis.Redis

    async def before(self, i: int) -> None:
        self.sync.flushdb()
        self.sync.set(self.writer.keys.leader, self.writer.token, px=3_600_000)

    async def run(self, i: int) -> None:
        w = self.writer
        await w.read_state()
        body = await w.fetch(i)
        extract = Extractor()
        by_symbol: dict[str, _Entry] = {}
        for raw in msgspec.json.decode(body, type=_Rows).symbols:
            entry = extract(raw)
            by_symbol.setdefault(entry.symbol, entry)
        del body
        await w.write_full(by_symbol, w.listing.order(list(by_symbol.values())))


@dataclass
class FloorIncremental:
    """A steady cycle done plainly: unchanged rows (same bytes at the same position) reuse
    their entry; only changed rows are decoded and written."""

    writer: FloorWriter
    sync: redis.Redis
    extract: Extractor = field(default_factory=Extractor)
    rows: list[msgspec.Raw] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)
    by_symbol: dict[str, _Entry] = field(default_factory=dict)
    symbols_json: bytes = b""
    version: str | None = None
    expect: str = "changed"

    async def before(self, i: int) -> None:
        if i == 0:
            self.sync.flushdb()
            self.sync.set(self.writer.keys.leader, self.writer.token, px=3_600_000)

    async def run(self, i: int) -> None:
        w, k = self.writer, self.writer.keys
        _, stored = await w.read_state()
        body = await w.fetch(i)
        raws = msgspec.json.decode(body, type=_Rows).symbols
        old_rows, old_entries = self.rows, self.entries
        rows: list[msgspec.Raw] = []
        entries: list[_Entry] = []
        changed = 0
        for n, raw in enumerate(raws):
            if n < len(old_rows) and raw == old_rows[n]:
                rows.append(old_rows[n])
                entries.append(old_entries[n])
            else:
                # Each kept row is its own small bytes, so the payload can be freed.
                row = msgspec.Raw(bytes(raw))
                rows.append(row)
                entries.append(self.extract(row))
                changed += 1
        del raws, body
        by_symbol: dict[str, _Entry] = {}
        for e in entries:
            by_symbol.setdefault(e.symbol, e)
        previous, previous_json = self.by_symbol, self.symbols_json
        held = self.version is not None and stored is not None and stored.decode() == self.version
        self.rows, self.entries, self.by_symbol = rows, entries, by_symbol
        if changed == 0 and held:
            if self.expect != "same":
                raise RuntimeError("floor: expected a changed row")
            meta = w.meta(self.version or "", len(by_symbol), 0)
            meta.pop("listed")

            def renew(pipe: Pipeline) -> None:
                pipe.expire(k.symbols, w.listing.cache_ttl)
                pipe.set(k.refreshed_at, meta["fetched_at"])
                pipe.hset(k.meta, mapping=meta)  # type: ignore[arg-type]
                pipe.hincrby(k.metrics, "refresh_success", 1)

            if await w.transact(renew, self.version):
                return
        listed = w.listing.order(
            entries if len(by_symbol) == len(entries) else [*by_symbol.values()]
        )
        symbols_json = _json_array([e.blob for e in listed])
        self.symbols_json = symbols_json
        version = _version(by_symbol, listed)
        if not held:
            self.version = await w.write_full(by_symbol, listed)
            return
        if self.expect != "changed" and i > 0:
            raise RuntimeError("floor: expected no change")
        changes = {n: e.blob for n, e in by_symbol.items() if previous.get(n) is not e}
        removed = [n for n in previous if n not in by_symbol]
        meta = w.meta(version, len(by_symbol), len(listed))
        event = msgspec.json.encode(
            {"market": k.market, "version": version, "changed": sorted(changes), "removed": removed}
        )
        ttl = w.listing.cache_ttl

        def fill(pipe: Pipeline) -> None:
            if symbols_json != previous_json:
                pipe.set(k.last_good, symbols_json)
                pipe.set(k.symbols, symbols_json, ex=ttl)
            else:
                pipe.expire(k.symbols, ttl)
            if changes:
                pipe.hset(k.by_symbol, mapping=changes)  # type: ignore[arg-type]
            if removed:
                pipe.hdel(k.by_symbol, *removed)
            pipe.set(k.refreshed_at, meta["fetched_at"])
            pipe.hset(k.meta, mapping=meta)  # type: ignore[arg-type]
            pipe.hincrby(k.metrics, "refresh_success", 1)
            pipe.xadd(k.changes, {"version": version, "diff": event}, maxlen=1000, approximate=True)
            pipe.execute_command("PUBLISH", k.events, event)

        if not await w.transact(fill, self.version):
            await w.write_full(by_symbol, listed)
        self.version = version


# ---------------------------------------------------------------------------------------------
# seed-style and symbold


@dataclass
class SeedStyle:
    """The legacy warm-up (stdlib JSON, plain dicts, blocking client called from the loop)."""

    session: aiohttp.ClientSession
    urls: tuple[str, str]
    client: redis.Redis
    quote_priority: tuple[str, ...]
    prefix: str = "seed"
    cache_ttl: int = 3600

    async def before(self, i: int) -> None:
        return None

    async def run(self, i: int) -> None:
        async with self.session.get(self.urls[i % 2], auto_decompress=True) as resp:
            resp.raise_for_status()
            body = await resp.read()
        data = json.loads(body)
        rank = {quote: n for n, quote in enumerate(self.quote_priority)}
        unknown = len(rank)
        trading = [s for s in data["symbols"] if s.get("status") == "TRADING"]
        trading.sort(key=lambda s: (rank.get(s["quoteAsset"], unknown), s["symbol"]))
        out = [seed_row(s) for s in trading]
        blob = json.dumps(out)
        self.client.set(f"{self.prefix}:symbols", blob, ex=self.cache_ttl)
        self.client.set(f"{self.prefix}:last_good", blob)
        self.client.set(f"{self.prefix}:refreshed_at", time.time())
        self.client.incr(f"{self.prefix}:refresh_success")


def seed_row(s: dict[str, Any]) -> dict[str, Any]:
    """The few fields the legacy warm-up kept per TRADING symbol."""
    tick = step = min_notional = None
    for f in s.get("filters", ()):
        kind = f.get("filterType")
        if kind == "PRICE_FILTER":
            tick = f.get("tickSize")
        elif kind == "LOT_SIZE":
            step = f.get("stepSize")
        elif kind in ("NOTIONAL", "MIN_NOTIONAL"):
            min_notional = f.get("minNotional")
    return {
        "symbol": s["symbol"],
        "base": s["baseAsset"],
        "quote": s["quoteAsset"],
        "status": s["status"],
        "tick_size": tick,
        "step_size": step,
        "min_notional": min_notional,
    }


@dataclass
class Symbold:
    """``refresh_once()`` of a refresher that is kept (steady) or replaced before every run
    (restart; with ``empty`` the database is flushed too), lease taken as the service does."""

    client: redis.asyncio.Redis
    session: aiohttp.ClientSession
    sync: redis.Redis
    url: str
    paths: tuple[str, str]
    alternate: bool
    restart: bool
    empty: bool
    expect: str
    refresher: Any = None

    async def before(self, i: int) -> None:
        if self.restart or self.refresher is None:
            self.refresher = None
            if self.empty:
                self.sync.flushdb()
            else:  # the previous daemon released its lease on a clean stop
                self.sync.delete(symbold_keys().leader)
            self.refresher = symbold_refresher(self.client, self.session, self.url, self.paths[0])
            await symbold_lead(self.refresher, self.client)
        symbold_point_at(self.refresher, self.url, self.paths[i % 2 if self.alternate else 0])

    async def run(self, i: int) -> None:
        result = await self.refresher.refresh_once()
        # Run 0 meets an empty database, so it is accepted whatever the case.
        if result.outcome != self.expect and not (i == 0 and result.outcome == "accepted"):
            raise RuntimeError(f"symbold: expected {self.expect}, got {result}")


@dataclass
class Env:
    """Clients and sessions for the cases; one Redis database per case."""

    redis_server: Any
    url: str
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    syncs: list[redis.Redis] = field(default_factory=list)

    def client(self, db: int) -> redis.asyncio.Redis:
        client: redis.asyncio.Redis = symbold_client(self.redis_server.url_db(db))
        self.closers.append(client.aclose)
        return client

    def sync(self, db: int) -> redis.Redis:
        client: redis.Redis = self.redis_server.client(db)
        self.syncs.append(client)
        return client

    def session(self, paths: tuple[str, str]) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = symbold_session(self.url, paths[0])
        self.closers.append(session.close)
        return session

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()
        self.closers.clear()
        for s in self.syncs:
            s.close()
        self.syncs.clear()

    def case(self, name: str, db: int, paths: tuple[str, str]) -> Any:
        client, sync = self.client(db), self.sync(db)
        session = self.session(paths)
        if name in SYMBOLD_CASES:
            return Symbold(
                client,
                session,
                sync,
                self.url,
                paths,
                alternate=name in (RESTART_CHANGED, STEADY_CHANGED),
                restart=name in (FIRST, RESTART_SAME, RESTART_CHANGED),
                empty=name == FIRST,
                expect="unchanged" if name in (RESTART_SAME, STEADY_SAME) else "accepted",
            )
        if name == SEED:
            return SeedStyle(
                session,
                (self.url + paths[0], self.url + paths[1]),
                sync,
                symbold_settings().markets.spot.quote_priority,
            )
        writer = FloorWriter(
            client,
            session,
            self.url,
            paths,
            alternate=name == FLOOR_CHANGED,
            keys=symbold_keys(),
            token=f"floor-{db}".encode(),
            listing=Listing.defaults(),
        )
        if name == FLOOR_FULL:
            return FloorFull(writer, sync)
        return FloorIncremental(writer, sync, expect="same" if name == FLOOR_SAME else "changed")


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Runs:
    samples: list[Sample] = field(default_factory=list)
    stalls: list[float] = field(default_factory=list)  # wall ms
    stalls_cpu: list[float] = field(default_factory=list)  # CPU ms of the longest stretch

    def cpu(self) -> list[float]:
        return [s.cpu * 1000.0 for s in self.samples]

    def wall(self) -> list[float]:
        return [s.wall * 1000.0 for s in self.samples]


async def measure(cases: dict[str, Any], rounds: int, warmup: int) -> dict[str, Runs]:
    """Round-robin over the cases (the order rotates each round), the ticker running."""
    names = list(cases)
    out = {name: Runs() for name in names}
    for i in range(warmup + rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            case = cases[name]
            await case.before(i)
            gc.collect()
            ticker = Ticker()
            await ticker.start()
            clock = Clock()
            await case.run(i)
            sample = clock.stop()
            stall, stall_cpu = await ticker.stop()
            if i >= warmup:
                out[name].samples.append(sample)
                out[name].stalls.append(stall)
                out[name].stalls_cpu.append(stall_cpu)
    return out


def q(values: Sequence[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]


@dataclass(frozen=True, slots=True)
class Ratio:
    median: float
    p25: float
    p75: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x [{self.p25:.2f}..{self.p75:.2f}]"


def ratio(num: Runs, den: Runs) -> Ratio:
    """Per-round CPU ratios (the two ran in the same round), median and quartiles."""
    rs = [a / b for a, b in zip(num.cpu(), den.cpu(), strict=True)]
    return Ratio(statistics.median(rs), q(rs, 0.25), q(rs, 0.75))


# ---------------------------------------------------------------------------------------------
# memory, one child process per case


@dataclass(frozen=True, slots=True)
class RssPlan:
    case: str
    web_url: str
    redis_url: str
    paths: tuple[str, str]


def _rss_child(conn: multiprocessing.connection.Connection, plan: RssPlan) -> None:
    try:
        with daemon_logging_to_devnull():
            report = run_async(_rss_main(plan))
        conn.send(report)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(f"error: {type(exc).__name__}: {exc}")
        raise


WARM = (STEADY_CHANGED, STEADY_SAME, FLOOR_CHANGED, FLOOR_SAME)


class UrlServer:
    """What ``Env`` needs of a Redis server, for a server another process started."""

    def __init__(self, url: str) -> None:
        self.base = url.rsplit("/", 1)[0]

    def url_db(self, db: int) -> str:
        return f"{self.base}/{db}"

    def client(self, db: int) -> redis.Redis:
        return redis.Redis.from_url(self.url_db(db))


async def _rss_main(plan: RssPlan) -> dict[str, int]:
    db = int(plan.redis_url.rsplit("/", 1)[1])
    env = Env(UrlServer(plan.redis_url), plan.web_url)
    try:
        case = env.case(plan.case, db, plan.paths)
        gc.collect()
        report = {"idle": proc_status()["VmRSS"]}
        if plan.case in WARM:
            await case.before(0)
            await case.run(0)
        await case.before(1)
        gc.collect()
        report["before"] = proc_status()["VmRSS"]
        report["reset"] = int(reset_peak())
        await case.run(1)
        report["peak"] = proc_status()["VmHWM"]
        gc.collect()
        report["after"] = proc_status()["VmRSS"]
        return report
    finally:
        await env.aclose()


def run_rss_child(plan: RssPlan) -> dict[str, int]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_rss_child, args=(child, plan), name="bench-rss")
    proc.start()
    child.close()
    try:
        if not parent.poll(180):
            raise RuntimeError("the RSS child did not report within 180 s")
        try:
            message: object = parent.recv()
        except EOFError:
            message = f"exited with code {proc.exitcode}"
        if not isinstance(message, dict):
            raise RuntimeError(f"RSS child ({plan.case}) failed: {message}")
        return message
    finally:
        parent.close()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


async def memory(env: Env, size: Size) -> dict[str, dict[str, int]]:
    """Each case in a fresh child; Redis prepared by this process beforehand."""
    sync = env.sync(DB_RSS)
    out: dict[str, dict[str, int]] = {}
    for name in CASES:
        sync.flushdb()
        if name in (RESTART_SAME, RESTART_CHANGED):
            # Redis holds the snapshot of payload A, as a previous daemon left it.
            prep = Symbold(
                env.client(DB_RSS),
                env.session(size.paths),
                sync,
                env.url,
                size.paths,
                alternate=False,
                restart=True,
                empty=True,
                expect="accepted",
            )
            await prep.before(0)
            await prep.run(0)
            sync.delete(symbold_keys().leader)
        plan = RssPlan(name, env.url, env.redis_server.url_db(DB_RSS), size.paths)
        out[name] = await asyncio.to_thread(run_rss_child, plan)
    sync.flushdb()
    return out


# ---------------------------------------------------------------------------------------------
# report


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def case_table(size: Size, runs: dict[str, Runs]) -> str:
    rows: list[list[object]] = []
    for name, r in runs.items():
        cpu, wall = r.cpu(), r.wall()
        rows.append(
            [
                name,
                statistics.median(cpu),
                f"{q(cpu, 0.25):.1f}..{q(cpu, 0.75):.1f}",
                statistics.median(wall),
                statistics.median(r.stalls_cpu),
                statistics.median(r.stalls),
                f"{statistics.median(cpu) / (size.bytes / 1e6):.2f}",
            ]
        )
    return table(
        [
            f"{size.label} (median of {len(next(iter(runs.values())).samples)})",
            "CPU ms",
            "CPU p25..p75",
            "wall ms",
            "stall CPU ms",
            "stall wall ms",
            "CPU ms/MB",
        ],
        rows,
    )


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    num: str
    den: str
    limit: float | None


TARGETS = (
    Target("steady, one row changed / floor, incremental", STEADY_CHANGED, FLOOR_CHANGED, 1.3),
    Target("steady, no change / floor, incremental, no change", STEADY_SAME, FLOOR_SAME, 1.3),
    Target("first cycle / floor, full", FIRST, FLOOR_FULL, FIRST_VS_FULL),
    Target("restart, same content / steady, no change", RESTART_SAME, STEADY_SAME, 1.5),
    Target(
        "restart, one row changed / steady, one row changed", RESTART_CHANGED, STEADY_CHANGED, None
    ),
    Target("seed-style / first cycle", SEED, FIRST, None),
    Target("seed-style / steady, one row changed", SEED, STEADY_CHANGED, None),
)


def target_table(results: dict[str, dict[str, Runs]], missed: list[str]) -> str:
    labels = list(results)
    rows: list[list[object]] = []
    for t in TARGETS:
        row: list[object] = [t.label, f"<= {t.limit:g}x" if t.limit else "reported"]
        for label in labels:
            r = ratio(results[label][t.num], results[label][t.den])
            if t.limit is None:
                row.append(str(r))
                continue
            ok = r.median <= t.limit
            row.append(f"{r} {verdict(ok)}")
            if not ok:
                missed.append(f"{label}: {t.label} = {r.median:.2f}x (<= {t.limit:g}x)")
        rows.append(row)
    return table(["CPU ratio: median [p25..p75] of rounds", "target", *labels], rows)


def stall_table(size: Size, runs: dict[str, Runs], missed: list[str]) -> str:
    rows: list[list[object]] = []
    for name in SYMBOLD_CASES:
        limit = STALL_STEADY_MS if name in (STEADY_CHANGED, STEADY_SAME) else STALL_FIRST_MS
        r = runs[name]
        stall = statistics.median(r.stalls_cpu)
        ok = stall <= limit
        rows.append(
            [
                name,
                f"{stall:.1f}",
                f"{max(r.stalls_cpu):.1f}",
                f"{statistics.median(r.stalls):.1f}",
                f"<= {limit:g}",
                verdict(ok),
            ]
        )
        if not ok:
            missed.append(f"{size.label}: {name} stalls the loop {stall:.1f} ms (<= {limit:g})")
    return table(
        [
            f"longest loop stall, {size.label}",
            "CPU ms",
            "worst run",
            "wall ms",
            "target (CPU)",
            "verdict",
        ],
        rows,
    )


def memory_table(size: Size, mem: dict[str, dict[str, int]], missed: list[str]) -> str:
    rows: list[list[object]] = []
    x = float(size.bytes)
    for name, m in mem.items():
        peak, kept = (m["peak"] - m["idle"]) / x, (m["after"] - m["idle"]) / x
        transient = (m["peak"] - m["before"]) / x
        row: list[object] = [
            name,
            mib(m["idle"]),
            f"+{peak:.2f}x",
            f"+{transient:.2f}x",
            f"{kept:+.2f}x",
        ]
        if name in SYMBOLD_CASES:
            ok_peak, ok_kept = peak <= PEAK_PAYLOADS, kept <= RETAINED_PAYLOADS
            row.append(f"peak {verdict(ok_peak)}, retained {verdict(ok_kept)}")
            if not ok_peak:
                missed.append(f"{size.label}: {name} peak RSS idle +{peak:.2f}x payload")
            if not ok_kept:
                missed.append(f"{size.label}: {name} retained RSS idle +{kept:.2f}x payload")
        else:
            row.append("(baseline)")
        rows.append(row)
    return table(
        [
            f"RSS, {size.label}, one child per case",
            "idle",
            "peak - idle",
            "peak - before cycle",
            "retained - idle",
            f"<= +{PEAK_PAYLOADS:g}x / +{RETAINED_PAYLOADS:g}x",
        ],
        rows,
    )


# ---------------------------------------------------------------------------------------------
# main


@dataclass
class Options:
    rounds: int
    modern_rounds: int
    warmup: int
    modern: bool
    rss: bool
    gzip: str


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks refresh",
        description="Refresh cycles of a deployment against floors and seed-style, one run.",
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds, 3.6 MB")
    parser.add_argument(
        "--modern-rounds", type=int, default=DEFAULT_MODERN_ROUNDS, help="timed rounds, 17 MB"
    )
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed rounds first")
    parser.add_argument("--no-modern", action="store_true", help="skip the 17 MB payload")
    parser.add_argument("--no-rss", action="store_true", help="skip the memory children")
    parser.add_argument("--gzip", choices=("auto", "never"), default="auto")
    # Options meant for other benchmarks (python -m benchmarks passes them to all) are ignored.
    args, _ = parser.parse_known_args(argv)
    if args.rounds < 1 or args.modern_rounds < 1 or args.warmup < 1:
        parser.error("--rounds and --modern-rounds must be >= 1, --warmup >= 1")
    return Options(
        args.rounds,
        args.modern_rounds,
        args.warmup,
        not args.no_modern,
        not args.no_rss,
        args.gzip,
    )


async def bench(opts: Options, sizes: list[Size], redis_srv: Any, web: PayloadServer) -> None:
    results: dict[str, dict[str, Runs]] = {}
    missed: list[str] = []
    memories: dict[str, dict[str, dict[str, int]]] = {}
    for size in sizes:
        rounds = opts.rounds if size is sizes[0] else opts.modern_rounds
        env = Env(redis_srv, web.url)
        try:
            cases = {name: env.case(name, DB[name], size.paths) for name in CASES}
            print(
                f"{size.label}: {mib(size.bytes)} ({size.bytes:,} bytes), {size.symbols:,} symbols"
                f" ({size.trading:,} TRADING); {rounds} rounds after {opts.warmup} warm-up"
            )
            results[size.label] = runs = await measure(cases, rounds, opts.warmup)
            print(case_table(size, runs))
            print()
            if opts.rss and size is sizes[-1]:
                memories[size.label] = await memory(env, size)
        finally:
            await env.aclose()
            client = redis_srv.client()
            client.flushall()
            client.close()
    print(
        "ratios of CPU time, per round (cases in one round ran back to back), median and"
        " quartiles over the rounds:"
    )
    print(target_table(results, missed))
    big = sizes[-1]
    print()
    print(
        "stall: the longest stretch a 1 ms ticker task in the same event loop could not run,"
        " median over runs: CPU ms this thread spent in it (what the code costs), and wall ms"
        " (how late the ticker woke; includes time the OS gave other processes)"
    )
    print(stall_table(big, results[big.label], missed))
    if memories:
        print()
        print(
            "RSS in a fresh child process per case: idle after set-up (imports, clients, lease),"
            " peak (VmHWM) during the measured cycle, RSS after it (collected); in payload"
            f" sizes ({mib(big.bytes)}). Steady and incremental cases ran one cycle first, so"
            " 'peak - before cycle' is the transient of the measured cycle alone."
        )
        print(memory_table(big, memories[big.label], missed))
    print()
    if missed:
        print("targets missed:")
        for m in missed:
            print(f"  - {m}")
    else:
        print("targets: all met")


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="symbold-bench-") as name:
        yield Path(name)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if not (FIXTURES_DIR / FIXTURE).is_file():
        return skipped(f"recorded payload {FIXTURES_DIR / FIXTURE} absent")
    modern = opts.modern and MAKE_PAYLOAD.is_file()
    if opts.modern and not modern:
        print(f"modern size skipped: {MAKE_PAYLOAD} absent")
    # Every case inflates the reply with zlib-ng: the daemon does (daemon.upstream.inflate),
    # and the floors and seed-style through aiohttp, whose inflater this sets for the process.
    aiohttp.set_zlib_backend(zlib_ng.zlib_ng)
    started = time.perf_counter()
    with temp_dir() as tmp:
        sizes = prepare_sizes(tmp, modern)
        served = {p: f for s in sizes for p, f in zip(s.paths, (s.a, s.b), strict=True)}
        with (
            private_redis() as redis_srv,
            PayloadServer(served, gzip_mode=opts.gzip) as web,
            daemon_logging_to_devnull(),
        ):
            probe = redis_srv.client()
            version = probe.info("server").get("redis_version", "?")
            probe.close()
            print(
                f"refresh benchmark: Python {python_version()}, {loop_name()}, redis-server"
                f" {version} (private, loopback), {machine()}; fake Binance in a child process,"
                f" gzip={opts.gzip}; lease on; gc on; CPU = this process"
            )
            print()
            run_async(bench(opts, sizes, redis_srv, web))
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
