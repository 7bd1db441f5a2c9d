"""Window alignment, header parsing, limits and config validation (no servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.budget.errors import BudgetValueError
from daemon.budget.keys import budget_keys
from daemon.budget.limits import (
    Limit,
    caps_for,
    clamp_ban,
    merge_limits,
    parse_rate_limits,
    parse_retry_after,
    parse_usage_headers,
    rate_limits_json,
    window_end,
    window_start,
)
from daemon.budget.options import BudgetOptions
from daemon.budget.plan import LimitTable, check_request
from daemon.budget.weights import EndpointWeights
from daemon.config.settings import ConfigError, load_settings
from daemon.contract.keys import market_keys
from daemon.redis.clients import check_one_slot

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(20)


def test_windows_align_to_interval_boundaries() -> None:
    minute = Limit("REQUEST_WEIGHT", "MINUTE", 1, 6000).interval_ms
    t = 1_700_000_083_456  # 00:01:23.456 into some minute
    assert window_start(t, minute) == 1_700_000_040_000
    assert window_end(t, minute) == 1_700_000_100_000
    ten_s = Limit("ORDERS", "SECOND", 10, 100).interval_ms
    assert window_start(t, ten_s) == 1_700_000_080_000
    day = Limit("ORDERS", "DAY", 1, 200000).interval_ms
    assert window_start(t, day) % 86_400_000 == 0
    assert window_start(window_end(t, minute), minute) == window_end(t, minute)


def test_usage_headers_any_case_and_garbage_ignored() -> None:
    got = parse_usage_headers(
        {
            "X-MBX-USED-WEIGHT-1M": "523",
            "x-mbx-order-count-10s": "3",
            "X-MBX-ORDER-COUNT-1D": "oops",
            "X-MBX-USED-WEIGHT": "9",
            "Content-Type": "application/json",
        }
    )
    assert [(g.kind, g.suffix, g.value) for g in got] == [
        ("REQUEST_WEIGHT", "1M", 523),
        ("ORDERS", "10S", 3),
    ]


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), (3, 3.0), ("Wed, 21 Oct", None), (None, None)],
)
def test_retry_after(raw: str | int | None, seconds: float | None) -> None:
    assert parse_retry_after(raw) == seconds


def test_ban_is_clamped_to_three_days() -> None:
    assert clamp_ban(10 * 86_400) == 3 * 86_400
    assert clamp_ban(0) > 0


def test_published_limits_round_trip_and_config_replaces() -> None:
    published = [
        Limit("REQUEST_WEIGHT", "MINUTE", 1, 6000),
        Limit("RAW_REQUESTS", "MINUTE", 5, 61000),
    ]
    raw = rate_limits_json(published)
    assert parse_rate_limits(raw) == tuple(published)
    odd = '[{"rateLimitType":"NEW_KIND","interval":"MINUTE","intervalNum":1,"limit":5}, 7]'
    assert parse_rate_limits(odd) == ()
    assert parse_rate_limits(b"not json") == ()
    merged = merge_limits(published, [Limit("REQUEST_WEIGHT", "MINUTE", 1, 3000)])
    assert Limit("REQUEST_WEIGHT", "MINUTE", 1, 3000) in merged
    assert len(merged) == 2


def test_caps_keep_a_reserve_for_high_priority() -> None:
    caps = caps_for(Limit("REQUEST_WEIGHT", "MINUTE", 1, 6000), 0.9, 0.1)
    assert (caps.high, caps.normal) == (5400, 4860)


def test_bad_input_names_the_value() -> None:
    with pytest.raises(BudgetValueError, match="got 0"):
        Limit("REQUEST_WEIGHT", "MINUTE", 1, 0)
    table = LimitTable.build(budget_keys(market_keys("spot"), "symbold"), BudgetOptions(), ())
    for weight, match in ((0, "got 0"), (-3, "got -3"), (6000, "6000 exceeds")):
        with pytest.raises(BudgetValueError, match=match):
            check_request(table, weight, "normal", 0, None)
    with pytest.raises(BudgetValueError, match="'urgent'"):
        check_request(table, 1, "urgent", 0, None)
    with pytest.raises(BudgetValueError, match="account"):
        check_request(table, 1, "high", 1, None)
    with pytest.raises(BudgetValueError, match="'a b'"):
        check_request(table, 1, "high", 1, "a b")
    with pytest.raises(ValueError, match="safety_share"):
        BudgetOptions(safety_share=0.0)


def test_config_limit_of_zero_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[[budget.limits]]\nrate_limit_type = "REQUEST_WEIGHT"\ninterval = "MINUTE"\nlimit = 0\n'
    )
    with pytest.raises(ConfigError, match=r"budget\.limits\[0\]\.limit.*>= 1"):
        load_settings(path, environ={})
    path.write_text('[budget]\non_redis_down = "open"\n')
    with pytest.raises(ConfigError, match=r"budget\.on_redis_down"):
        load_settings(path, environ={})


def test_per_market_overrides_apply() -> None:
    loaded = load_settings(
        environ={},
        use_default_path=False,
        overrides={
            "budget.usdm.safety_share": 0.5,
            "budget.usdm.limits": [
                {"rate_limit_type": "REQUEST_WEIGHT", "interval": "MINUTE", "limit": 1000}
            ],
        },
    )
    usdm = BudgetOptions.from_settings(loaded.settings, "usdm")
    assert usdm.safety_share == 0.5
    assert usdm.limits == (Limit("REQUEST_WEIGHT", "MINUTE", 1, 1000),)
    assert BudgetOptions.from_settings(loaded.settings, "spot").safety_share == 0.9


def test_every_budget_key_shares_the_market_slot() -> None:
    keys = budget_keys(market_keys("spot"), "symbold")
    limits = [Limit("REQUEST_WEIGHT", "MINUTE", 1, 1), Limit("ORDERS", "SECOND", 10, 1)]
    names = [*keys.all_fixed(), keys.meta, keys.limit_key(limits[0])]
    names.append(keys.limit_key(limits[1], "main"))
    check_one_slot("budget", names)  # raises ConfigError if they would not share a slot


def test_endpoint_weights(caplog: pytest.LogCaptureFixture) -> None:
    w = EndpointWeights(default_weight=7)
    assert w.cost("GET", "/api/v3/exchangeInfo").weight == 20
    assert w.cost("GET", "/api/v3/depth", {"limit": "5000"}).weight == 250
    assert w.cost("GET", "/api/v3/depth", {}).weight == 5
    assert w.cost("POST", "/api/v3/order").orders == 1
    with caplog.at_level("WARNING", logger="symbold.budget"):
        assert w.cost("GET", "/api/v3/new").weight == 7
        assert w.cost("GET", "/api/v3/new").weight == 7
    assert len([r for r in caplog.records if "/api/v3/new" in r.getMessage()]) == 1


def test_import_is_light_and_the_sync_twin_is_current() -> None:
    code = (
        "import sys, logging; import daemon.budget; "
        "assert 'aiohttp' not in sys.modules and 'ccxt' not in sys.modules, 'heavy import'; "
        "assert not logging.getLogger().handlers; "
        # The clients load on first use: key names and result types come without them.
        "assert 'daemon.budget._async' not in sys.modules, 'async client loaded eagerly'; "
        "assert 'daemon.budget._sync' not in sys.modules, 'sync client loaded eagerly'; "
        "from daemon.budget import WeightBudget, store_time_offset_sync; "
        "import daemon.budget._sync as s; "
        "assert WeightBudget is s.WeightBudget and store_time_offset_sync is s.store_time_offset; "
        "assert daemon.budget.AsyncWeightBudget.__module__ == 'daemon.budget._async'; "
        "assert sorted(n for n in daemon.budget.__all__ if not hasattr(daemon.budget, n)) == []"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    subprocess.run(
        [sys.executable, "scripts/unasync.py", "--check", "daemon/budget/_async.py"],
        check=True,
        cwd=ROOT,
    )
