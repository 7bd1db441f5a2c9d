"""What a fresh derivation of a payload stores (no memo, nothing kept): the bytes every write,
whatever shortcut it took, must leave in Redis."""

from __future__ import annotations

from daemon.config.settings import MarketSettings
from daemon.contract.record import encode_record
from daemon.snapshot.listing import prioritize
from daemon.snapshot.normalize import normalize


def fresh_by_symbol(body: bytes, market: str = "spot") -> dict[bytes, bytes]:
    """by_symbol as stored: symbol -> record JSON."""
    return {
        rec.symbol.encode(): encode_record(rec) for rec in normalize(body, market=market).records
    }


def fresh_listing(body: bytes, settings: MarketSettings, market: str = "spot") -> bytes:
    """The listing's JSON (what ``symbols`` and ``last_good`` hold) under `settings`."""
    records = normalize(body, market=market).records
    listed = prioritize(
        records,
        list_statuses=settings.list_statuses,
        quote_priority=settings.quote_priority,
        pinned=settings.pinned,
    )
    return b"[" + b",".join(encode_record(rec) for rec in listed) + b"]"
