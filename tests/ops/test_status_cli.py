"""`symbold status`: text, --json and --check give one verdict (daemon.ops.freshness), the
fallback flag is its own field, and the weight budget's windows show when its keys exist."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.budget import AsyncWeightBudget
from daemon.ops.freshness import judge
from tests.support.daemon_proc import run_cli
from tests.support.fake_binance import SPOT, FakeBinance, Fault, small_exchange_info

pytestmark = pytest.mark.timeout(60)

SYMBOLS = tuple(f"V{i:02d}USDT" for i in range(8))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    async with FakeBinance() as server:
        server.set_payload(SPOT, small_exchange_info(SYMBOLS))
        yield server


def test_one_rule() -> None:
    assert judge("spot", None, 10.0, 100.0).word == "STALE"
    assert judge("spot", 95.0, 10.0, 100.0).fresh
    assert judge("spot", 90.0, 10.0, 100.0).fresh  # exactly max_age old: still fresh
    old = judge("spot", 80.0, 10.0, 100.0)
    assert (old.fresh, old.word, old.reason) == (
        False,
        "STALE",
        "spot: snapshot 20 s old (max 10 s)",
    )


async def surfaces(env: dict[str, str], config: Path) -> tuple[str, dict[str, object], int]:
    text = await asyncio.to_thread(run_cli, "status", "--config", str(config), env=env)
    js = await asyncio.to_thread(run_cli, "status", "--json", "--config", str(config), env=env)
    check = await asyncio.to_thread(run_cli, "status", "--check", "--config", str(config), env=env)
    assert text.returncode == 0, text.stderr
    assert js.returncode == 0, js.stderr
    return text.stdout, json.loads(js.stdout)["spot"], check.returncode


async def test_text_json_and_check_agree(redis_url: str, fake: FakeBinance, tmp_path: Path) -> None:
    env = {"REDIS_URL": redis_url}
    config = tmp_path / "c.toml"
    base = f'[markets.spot]\nbase_urls = ["{fake.url}"]\n'
    config.write_text(base + "[health]\nmax_age = 600.0\n")
    assert (
        await asyncio.to_thread(run_cli, "refresh", "--config", str(config), env=env)
    ).returncode == 0
    fake.set_mode(SPOT, Fault.status(500))
    assert (
        await asyncio.to_thread(run_cli, "refresh", "--config", str(config), env=env)
    ).returncode == 1

    # A failed refresh just now: the served snapshot is a fallback, and it is young: fresh.
    text, spot, check = await surfaces(env, config)
    assert "old, fresh, version" in text
    assert "serving a fallback" in text
    assert (spot["fresh"], spot["stale"], spot["serving_fallback"]) == (True, False, True)
    assert check == 0

    # Older than max_age: STALE everywhere, and --check fails.
    config.write_text(base + "[health]\nmax_age = 0.001\n")
    text, spot, check = await surfaces(env, config)
    assert "STALE (max 0 s)" in text
    assert (spot["fresh"], spot["stale"]) == (False, True)
    assert str(spot["stale_reason"]).startswith("spot: snapshot")
    assert check == 1


async def test_status_shows_the_weight_budget(
    redis_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    env = {"REDIS_URL": redis_url, "SYMBOLD_SPOT_BASE_URLS": fake.url}
    left = 60.0 - time.time() % 60.0
    if left < 15.0:  # the figures below must fall in one minute window
        await asyncio.sleep(left + 0.05)
    assert (await asyncio.to_thread(run_cli, "refresh", env=env)).returncode == 0
    before = await asyncio.to_thread(run_cli, "status", env=env)
    # symbold refresh charged its exchangeInfo fetch (weight 20) to the shared budget.
    assert "weight budget: REQUEST_WEIGHT 1M 20/6000" in before.stdout, before.stdout
    async with AsyncWeightBudget.from_url(redis_url, market="spot") as budget:
        await budget.acquire(37)
    text = await asyncio.to_thread(run_cli, "status", env=env)
    assert "weight budget: REQUEST_WEIGHT 1M 57/6000" in text.stdout, text.stdout
    js = await asyncio.to_thread(run_cli, "status", "--json", env=env)
    windows = {w["limit"]: (w["used"], w["cap"]) for w in json.loads(js.stdout)["spot"]["budget"]}
    assert windows["REQUEST_WEIGHT 1M"] == (57, 6000)
