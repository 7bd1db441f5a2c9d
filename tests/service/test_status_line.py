"""The per-market text of the systemd STATUS= line never contradicts its freshness word."""

from __future__ import annotations

import pytest

from daemon.ops.freshness import Freshness
from daemon.service.status_line import market_text

pytestmark = pytest.mark.timeout(10)


def verdict(*, fresh: bool, age: float | None) -> Freshness:
    return Freshness("spot", fresh, age, 120.0, "" if fresh else "too old")


def test_held_snapshot_is_described_with_its_count() -> None:
    text = market_text(verdict(fresh=True, age=3.0), 20, True, None)
    assert text.startswith("spot: 20 symbols, ")
    assert text.endswith(" old, fresh")


def test_a_snapshot_seen_only_in_redis_is_not_called_missing() -> None:
    # Found fresh in Redis (a leader elsewhere, or a restart over a fresh snapshot) while
    # this process holds none: "no snapshot yet, fresh" would contradict itself.
    text = market_text(verdict(fresh=True, age=3.0), None, False, None)
    assert "no snapshot yet" not in text
    assert text.startswith("spot: snapshot in Redis, ")
    assert text.endswith(" old, fresh (standby)")


def test_nothing_anywhere_is_no_snapshot_yet() -> None:
    assert market_text(verdict(fresh=False, age=None), None, True, None) == (
        "spot: no snapshot yet, STALE"
    )
