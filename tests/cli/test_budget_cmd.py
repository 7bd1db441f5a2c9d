"""``symbold budget`` as a child process against a real redis-server: what it prints, the
watch loop bounded by --count, and the exit codes of an unreachable or refusing Redis."""

from __future__ import annotations

import json
import time

import pytest

from daemon.budget import Limit, WeightBudget, rate_limits_json
from daemon.contract.keys import market_keys
from tests.support.daemon_proc import run_cli
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(60)

SECRET = "Pa55w0rd-never-logged"
LIMITS = [Limit("REQUEST_WEIGHT", "MINUTE", 1, 1000), Limit("RAW_REQUESTS", "MINUTE", 5, 61000)]


def _spend(url: str) -> float:
    """Publish limits, spend 37 weight, get one denial and report a 418; return the ban."""
    import redis

    direct = redis.Redis.from_url(url)
    direct.hset(market_keys("spot").meta, "rate_limits", rate_limits_json(LIMITS))
    direct.close()
    with WeightBudget.from_url(url) as budget:
        budget.start_fresh()
        budget.acquire(17)
        budget.acquire(20)
        with pytest.raises(Exception, match="does not fit"):
            budget.acquire(900, priority="high", wait=False)  # high cap 900: 37 + 900 > 900
        return budget.report_limited(418, 120)


def test_json_shows_windows_counters_and_ban(redis_server: RedisServer) -> None:
    url = redis_server.url_db(5)
    redis_server.client(5).flushdb()
    until = _spend(url)
    result = run_cli("budget", "--market", "spot", "--json", env={"REDIS_URL": url})
    assert result.returncode == 0, result.stderr
    spot = json.loads(result.stdout)["spot"]
    weight = next(w for w in spot["windows"] if w["type"] == "REQUEST_WEIGHT")
    assert (weight["used"], weight["limit"], weight["interval"]) == (37, 1000, "1M")
    assert (weight["cap_normal"], weight["cap_high"]) == (810, 900)
    assert 0 < weight["reset_in"] <= 60
    raw = next(w for w in spot["windows"] if w["type"] == "RAW_REQUESTS")
    assert raw["used"] == 2
    assert spot["counters"] == {"waits": 0, "denials": 1, "bans_reported": 1}
    assert spot["ban_until"] == pytest.approx(until, abs=0.001)
    assert spot["limits_from"] == "published"


def test_text_and_watch_stops_after_count(redis_server: RedisServer) -> None:
    url = redis_server.url_db(6)
    redis_server.client(6).flushdb()
    _spend(url)
    started = time.monotonic()
    result = run_cli("budget", "--watch", "--count", "3", env={"REDIS_URL": url})
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    blocks = [line for line in result.stdout.splitlines() if line.startswith("spot ")]
    assert len(blocks) == 3  # one redraw per second, three readings
    assert took >= 2.0
    assert "REQUEST_WEIGHT 1M" in result.stdout
    assert "37 / 1000" in result.stdout
    assert "ban: until" in result.stdout
    assert "denials 1" in result.stdout


def test_unreachable_exits_69_without_secret() -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    # Through the environment: a password in --redis-url adds a warning line of its own.
    result = run_cli("budget", env={"REDIS_URL": url})
    assert result.returncode == 69, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line says what went wrong
    assert SECRET not in result.stdout + result.stderr


def test_wrong_password_exits_78(redis_factory: type[RedisServer]) -> None:
    server = redis_factory(password="right-password").start()
    url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
    result = run_cli("budget", "--json", env={"REDIS_URL": url})
    assert result.returncode == 78, result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
