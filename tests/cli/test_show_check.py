"""``symbold show`` and ``symbold check`` against a real redis-server holding a snapshot the
daemon's own store wrote: in-process through ``daemon.cli.main.main`` (stdout and stderr
captured), and once as a child process."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from daemon import exitcodes
from daemon.cli.main import main
from daemon.contract.keys import market_keys
from daemon.contract.record import record_to_dict
from daemon.rules import check_order, rules_for
from tests.readers.sample_snapshots import V1, V1_RECORDS, Writer
from tests.support.daemon_proc import run_cli
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(30)

BTC = V1_RECORDS["BTCUSDT"]
BTC_RULES = rules_for(BTC)


@pytest.fixture
def cli(redis_url: str, tmp_path: Path) -> list[str]:
    """Common flags: this test's database, and an empty config file (no /etc/symbold)."""
    config = tmp_path / "config.toml"
    config.write_text("")
    return ["--redis-url", redis_url, "--config", str(config)]


@pytest.fixture
def seeded(redis_url: str, cli: list[str]) -> list[str]:
    Writer(redis_url).commit(V1)
    return cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# show
# ---------------------------------------------------------------------------------------------


def test_show_prints_the_record_and_each_filter(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "show", "btcusdt", *seeded)  # case-insensitive
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "BTCUSDT (spot): TRADING"
    assert "  base BTC, quote USDT" in lines
    assert any(line.startswith("  order types: LIMIT, LIMIT_MAKER, MARKET") for line in lines)
    text = "\n".join(lines)
    assert "PRICE_FILTER           price min 0.01, max 1000000, step 0.01" in text
    assert "LOT_SIZE               quantity min 0.00001, max 9000, step 0.00001" in text
    assert "max 83.41209517" in text  # MARKET_LOT_SIZE
    assert "NOTIONAL               notional (price x quantity) min 5 (MARKET too)" in text
    assert "BUY price 0.2 .. 5 x, SELL 0.2 .. 5 x the 5-minute average price" in text
    assert "at most 50 parts" in text
    assert "above 10 .. 2000, below 10 .. 2000" in text
    assert "not checked            MAX_NUM_ORDERS" in text


def test_show_json_is_the_record_and_the_compiled_bounds(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "show", "BTCUSDT", "--json", *seeded)
    assert code == 0
    body = json.loads(out)
    rules = body.pop("rules")
    assert body == record_to_dict(BTC)
    assert rules["price"]["step"] == "0.01000000"
    assert rules["lot"]["minimum"] == "0.00001000"
    assert rules["market_lot"]["minimum"] == "0.00000000"  # fixed point, never 0E-8
    assert rules["notionals"][0]["minimum"] == "5.00000000"
    assert rules["order_types"] == sorted(BTC.order_types)
    # Every decimal bound is exactly the compiled value.
    assert BTC_RULES.price is not None
    assert BTC_RULES.lot is not None
    assert Decimal(rules["price"]["maximum"]) == BTC_RULES.price.maximum
    assert Decimal(rules["lot"]["step"]) == BTC_RULES.lot.step
    assert rules["percent_price_by_side"] == {
        "bid_up": "5",
        "bid_down": "0.2",
        "ask_up": "5",
        "ask_down": "0.2",
        "avg_price_mins": 5,
    }


def test_show_unknown_symbol_exits_65(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "show", "NOSUCHSYMBOL", *seeded)
    assert code == exitcodes.DATAERR == 65
    assert out == ""
    assert err.strip() == "symbold: no symbol NOSUCHSYMBOL in the spot snapshot"


@pytest.mark.parametrize("command", [["show"], ["check", "BUY", "LIMIT", "--quantity", "1"]])
def test_no_snapshot_exits_69(
    cli: list[str], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    argv = [command[0], "BTCUSDT", *command[1:], *cli]
    code, out, err = run(capsys, *argv)
    assert code == exitcodes.UNAVAILABLE == 69
    assert out == ""
    assert "no snapshot of market spot in Redis" in err
    assert market_keys("spot").by_symbol in err


def test_other_market_without_snapshot_exits_69(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "show", "BTCUSDT", "--market", "usdm", *seeded)
    assert code == 69
    assert "no snapshot of market usdm" in err


def test_redis_down_exits_69_and_wrong_password_78(
    tmp_path: Path, redis_factory: type[RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[redis]\nretry_attempts = 0\n")
    down = f"redis://127.0.0.1:{free_port()}/0"
    code, _out, err = run(capsys, "show", "BTCUSDT", "--redis-url", down, "--config", str(config))
    assert code == 69
    assert "symbold: redis unreachable:" in err
    server = redis_factory(password="right-password").start()
    wrong = f"redis://:wrong-password@127.0.0.1:{server.port}/0"
    code, _, err = run(
        capsys, "check", "BTCUSDT", "BUY", "MARKET", "--redis-url", wrong, "--config", str(config)
    )
    assert code == 78
    assert "symbold: redis auth:" in err
    assert "wrong-password" not in err


def test_wrongtype_exits_65(
    redis_url: str, cli: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with redis.Redis.from_url(redis_url) as direct:
        direct.set(market_keys("spot").by_symbol, "not a hash")
    code, _, err = run(capsys, "show", "BTCUSDT", *cli)
    assert code == 65
    assert "WRONGTYPE" in err


def test_bad_configuration_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "BTCUSDT", "--redis-url", "ftp://example.com")
    assert code == 78
    assert "configuration error" in err


# ---------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------


def test_check_valid_order_exits_0(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "check",
        "BTCUSDT",
        "buy",
        "limit",
        "--quantity",
        "0.001",
        "--price",
        "27000",
        *seeded,
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "BTCUSDT (spot) BUY LIMIT quantity=0.001 price=27000: valid"
    assert "PERCENT_PRICE_BY_SIDE (needs --reference-price)" in out


def test_check_invalid_order_prints_binance_messages_and_exits_65(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quantity", "0.00001", "--price", "27000.123"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, *seeded)
    assert code == 65
    expected = check_order(BTC_RULES, "BUY", "LIMIT", quantity="0.00001", price="27000.123")
    assert len(expected.violations) == 2
    lines = out.splitlines()
    assert lines[0].endswith(": invalid (2 violations)")
    assert lines[1:3] == [f"  {v.message}" for v in expected.violations]
    assert lines[1].startswith("  Filter failure: PRICE_FILTER")
    assert lines[2].startswith("  Filter failure: NOTIONAL")
    assert "nearest valid order" not in out


def test_check_fix_prints_the_nearest_valid_order_and_still_exits_65(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quantity", "0.00001", "--price", "27000.123", "--fix"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, *seeded)
    assert code == 65
    fixed = out.splitlines()[-1]
    assert fixed == (
        "nearest valid order: BUY LIMIT quantity=0.00019 price=27000.12 (changed: price, quantity)"
    )
    # ... and that order passes.
    argv = ["--quantity", "0.00019", "--price", "27000.12"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, *seeded)
    assert code == 0, out


def test_check_json_with_fix(seeded: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quantity", "0.00001", "--price", "27000.123", "--fix", "--json"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, *seeded)
    assert code == 65
    body = json.loads(out)
    assert body["ok"] is False
    assert body["order"] == {"quantity": "0.00001", "price": "27000.123"}
    assert [v["filter_type"] for v in body["violations"]] == ["PRICE_FILTER", "NOTIONAL"]
    assert body["violations"][0] == {
        "filter_type": "PRICE_FILTER",
        "field": "price",
        "value": "27000.123",
        "rule": "tickSize",
        "bound": "0.01000000",
        "message": body["violations"][0]["message"],
    }
    assert body["fix"]["order"] == {"quantity": "0.00019", "price": "27000.12"}
    assert body["fix"]["changed"] == ["price", "quantity"]


def test_check_reference_price_enables_percent_price(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quantity", "0.001", "--price", "27000", "--reference-price", "1000"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, "--json", *seeded)
    assert code == 65
    body = json.loads(out)
    assert [v["filter_type"] for v in body["violations"]] == ["PERCENT_PRICE_BY_SIDE"]
    assert "PERCENT_PRICE_BY_SIDE" not in body["unchecked"]


def test_check_symbol_not_trading_has_no_fix(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quantity", "1", "--fix"]
    code, out, _ = run(capsys, "check", "GASBTC", "SELL", "MARKET", *argv, *seeded)
    assert code == 65
    assert "Market is closed. (GASBTC status is HALT, not TRADING)" in out
    assert out.splitlines()[-1].startswith("no valid order near this one: GASBTC is HALT")


def test_check_valid_order_with_fix_has_nothing_to_fix(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--quantity", "0.001", "--price", "27000", "--fix", "--json"]
    code, out, _ = run(capsys, "check", "BTCUSDT", "BUY", "LIMIT", *argv, *seeded)
    assert code == 0
    assert json.loads(out)["fix"] is None


def test_check_unknown_symbol_exits_65(
    seeded: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "check", "NOPE", "BUY", "MARKET", "--quantity", "1", *seeded)
    assert (code, out) == (65, "")
    assert "no symbol NOPE" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("BTCUSDT", "BUY", "LIMIT", "--quantity", "abc"),
        ("BTCUSDT", "BUY", "LIMIT", "--price", "nan"),
        ("BTCUSDT", "HOLD", "LIMIT", "--quantity", "1"),
        ("BTCUSDT", "BUY", "LIMIT", "--trailing-delta", "1.5"),
    ],
)
def test_check_bad_arguments_exit_64(
    cli: list[str], capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", *argv, *cli])
    assert exited.value.code == 64
    assert "error:" in capsys.readouterr().err


def test_check_as_a_child_process(redis_url: str) -> None:
    Writer(redis_url).commit(V1)
    env = {"REDIS_URL": redis_url}
    result = run_cli(
        "check", "BTCUSDT", "SELL", "LIMIT", "--quantity", "0.001", "--price", "0.001", env=env
    )
    assert result.returncode == 65, result.stderr
    assert "Filter failure: PRICE_FILTER" in result.stdout
    result = run_cli("show", "ETHUSDT", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["symbol"] == "ETHUSDT"
    assert run_cli("show", "NOPE", env=env).returncode == 65
