#!/usr/bin/env python3
"""Run the reliability suite (and the soak) and publish the results as docs/reliability.md.

    .venv/bin/python scripts/reliability_table.py                   # run everything, write the doc
    .venv/bin/python scripts/reliability_table.py --soak-seconds 0  # skip the soak
    .venv/bin/python scripts/reliability_table.py --save build/rel   # also keep the raw results
    .venv/bin/python scripts/reliability_table.py --results build/rel/results.json \
        --junit build/rel/junit.xml                                 # render only, no run

The tests under tests/reliability (and tests/soak) describe their row through the
``reliability`` fixture (tests/support/reliability_results.py); with
``SYMBOLD_RELIABILITY_RESULTS`` set, the session writes rows, measured recovery times and
outcomes to that JSON file. Rows that earlier test files already prove are listed in REFERENCED
below; their pass/fail comes from the JUnit XML of the same run. Exit status: 0 when every row
passed (an xfail counts as a known bug, not a pass), 1 otherwise -- the document is written
either way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "reliability.md"
GROUP_ORDER = ["Redis", "Upstream", "Signals", "Secrets", "Soak"]


@dataclass(frozen=True)
class Referenced:
    group: str
    fault: str
    expected: str
    nodeid: str  # a test, or a parametrized test's base id (every case must pass)


REFERENCED = [
    Referenced(
        "Redis",
        "A snapshot key (changes, meta, by_symbol, symbols, last_good, metrics) of the wrong type",
        "nothing written or counted; logged at error as snapshot.corrupt; refresh exits 65; the "
        "next cycle rewrites the snapshot whole",
        "tests/refresh/test_integrity.py::test_wrong_type_key_writes_nothing_exits_65_then_is_repaired",
    ),
    Referenced(
        "Redis",
        "by_symbol turned into a list, same payload",
        "not reported as unchanged: exit 65, then repaired; readers HGET again",
        "tests/refresh/test_integrity.py::test_same_payload_with_by_symbol_a_list_is_not_unchanged",
    ),
    Referenced(
        "Redis",
        "maxmemory-policy allkeys-lru / allkeys-random / volatile-ttl",
        "warned (redis.eviction_policy); with eviction = refuse nothing is written, exit 78",
        "tests/refresh/test_integrity.py::test_an_evicting_policy_is_warned_about_or_refused",
    ),
    Referenced(
        "Redis",
        "Lease key without a TTL held by an unknown owner",
        "logged at error (lease.no_ttl), taken over after one lease ttl (lease.taken_over)",
        "tests/snapshot/test_lease_broken.py::test_a_holder_without_ttl_is_taken_over_after_one_ttl",
    ),
    Referenced(
        "Redis",
        "300 counted cycles",
        "one capped token set per market (<= 256 members, 24 h TTL), every event counted once",
        "tests/refresh/test_integrity.py::test_counting_tokens_stay_in_one_capped_key",
    ),
    Referenced(
        "Upstream",
        "A row whose served tickSize becomes 0",
        "previous row served, named in meta held_rows and the log, rows_held counted; accepted "
        "after confirm_shrink identical payloads",
        "tests/refresh/test_integrity.py::test_a_zero_tick_is_held_until_confirmed_and_named",
    ),
    Referenced(
        "Upstream",
        "A decimal that is NaN, negative, infinite or not a number",
        "never served: the previous row stays (a new symbol stays out)",
        "tests/refresh/test_integrity.py::test_an_invalid_decimal_is_never_served",
    ),
    Referenced(
        "Upstream",
        "A TRADING row without its filters",
        "previous row served until confirmed",
        "tests/refresh/test_integrity.py::test_a_trading_row_losing_its_filters_is_held",
    ),
    Referenced(
        "Upstream",
        "serverTime an hour older than the snapshot served",
        "held back (rejected, exit 75) until confirm_shrink identical replies",
        "tests/refresh/test_integrity.py::test_a_server_time_an_hour_back_is_held_back_until_confirmed",
    ),
    Referenced(
        "Upstream",
        "Many unusable rows in one payload",
        "counted like a shrink: held back by the shrink guard",
        "tests/refresh/test_integrity.py::test_many_held_rows_fall_under_the_shrink_guard",
    ),
    Referenced(
        "Upstream",
        "A stored ban of 10 years or inf, then the ban key deleted",
        "clamped to 3 days and logged at error (ban.clamped); deleting the key lets the running "
        "daemon fetch at its next cycle",
        "tests/refresh/test_integrity.py::test_an_absurd_ban_is_clamped_and_clearing_it_takes_effect",
    ),
    Referenced(
        "Upstream",
        "A 4 MB file: source under an address-space limit 32 MB above the interpreter's",
        "read by its size, not by allocating max_body_bytes",
        "tests/upstream/test_file_source.py::test_a_file_source_is_read_by_its_size_not_the_cap",
    ),
    Referenced(
        "Redis",
        "Wrong password at start",
        "exit 78 (EX_CONFIG, systemd does not restart), no upstream request, password not printed",
        "tests/service/test_daemon.py::test_run_with_wrong_password_exits_78_without_the_secret",
    ),
    Referenced(
        "Redis",
        "Readers during 120 commits of two alternating snapshots (4 readers, MULTI and "
        "single commands)",
        "never a mix of two snapshots",
        "tests/refresh/test_commit_atomicity.py::test_readers_never_see_a_mix_of_two_snapshots",
    ),
    Referenced(
        "Redis",
        "MULTI timed out by DEBUG SLEEP (refresher level)",
        "the watched transaction is not re-sent: Redis runs it once, refresh_success counted once",
        "tests/refresh/test_commit_atomicity.py::test_a_retried_commit_counts_success_exactly_once",
    ),
    Referenced(
        "Redis",
        "OOM while recording a failure / during a ban (refresher level)",
        "reported, never raised; data untouched",
        "tests/refresh/test_redis_failures.py::test_redis_refusing_writes_during_a_ban_is_reported_not_raised",
    ),
    Referenced(
        "Upstream",
        "Every upstream fault at the refresher level (21 cases, incl. 503, 404, body too "
        "large, nothing listed)",
        "byte-identical data, TTL not renewed, meta stale with the reason, counter +1",
        "tests/refresh/test_fetch_failures.py::test_upstream_fault_never_replaces_good_data",
    ),
    Referenced(
        "Upstream",
        "429 with Retry-After; deadline honoured by a restarted refresher",
        "no fetch until the deadline",
        "tests/refresh/test_rate_limit_bans.py::test_429_with_retry_after_stores_a_ban_that_a_restarted_daemon_honours",
    ),
    Referenced(
        "Upstream",
        "418 ban deadline taken from the body",
        "no fetch until the deadline",
        "tests/refresh/test_rate_limit_bans.py::test_418_ban_deadline_from_the_body",
    ),
    Referenced(
        "Upstream",
        "gzip bomb in a fresh interpreter, with a control run",
        "capped: grows < 48 MiB; uncapped control: > 150 MiB",
        "tests/upstream/test_body_cap.py::test_gzip_bomb_is_refused_with_bounded_memory",
    ),
    Referenced(
        "Upstream",
        "Upstream down for many cycles under systemd",
        "READY sent, watchdog pings go on",
        "tests/ops/test_systemd.py::test_upstream_outage_keeps_watchdog_pings_and_ready_is_sent",
    ),
    Referenced(
        "Signals",
        "1,000 SIGHUPs in a burst",
        "refreshes <= 1 + duration / min_refresh_gap; exit 0",
        "tests/service/test_daemon.py::test_sighup_burst_is_coalesced",
    ),
    Referenced(
        "Signals",
        "SIGTERM while the upstream fetch hangs",
        "exit 0 within shutdown_timeout; snapshot whole",
        "tests/service/test_daemon.py::test_sigterm_during_a_slow_refresh_exits_zero_with_a_whole_snapshot",
    ),
    Referenced(
        "Signals",
        "A second SIGTERM during the grace period",
        "exit 1 at once",
        "tests/service/test_daemon.py::test_second_sigterm_exits_at_once",
    ),
    Referenced(
        "Secrets",
        "Failing connection: log lines and tracebacks in json, console and journald formats",
        "password never printed",
        "tests/test_redaction.py::test_failing_connection_logs_and_traceback_hide_password",
    ),
]


# ============================================================================================
# running


def run_pytest(args: list[str], results: Path, junit: Path | None) -> int:
    env = dict(os.environ, SYMBOLD_RELIABILITY_RESULTS=str(results))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    if junit is not None:
        cmd.append(f"--junitxml={junit}")
    print("+", " ".join(cmd), flush=True)
    # our own interpreter and arguments, no shell
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode  # noqa: S603


def junit_outcomes(path: Path | None) -> dict[str, list[str]]:
    """nodeid (without parameters) -> outcomes of its cases."""
    out: dict[str, list[str]] = {}
    if path is None or not path.exists():
        return out
    # the JUnit file this script just had pytest write
    for case in ET.parse(path).getroot().iter("testcase"):  # noqa: S314
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "").split("[", 1)[0]
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        elif (skipped := case.find("skipped")) is not None:
            outcome = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            outcome = "passed"
        out.setdefault(f"{module}::{name}", []).append(outcome)
    return out


# ============================================================================================
# rendering


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _result(outcome: str) -> str:
    return {
        "passed": "pass",
        "failed": "**FAIL**",
        "xfailed": "known bug (xfail)",
        "xpassed": "xpass",
        "skipped": "skipped",
    }.get(outcome, f"**{outcome}**")


def _test_link(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    return f"[`{name}`](../{path})"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(data: dict[str, Any], junit: dict[str, list[str]], meta: dict[str, str]) -> str:
    rows: list[dict[str, Any]] = [r for r in data.get("rows", {}).values() if r.get("fault")]
    soak = data.get("soak")
    lines = [
        "# Reliability",
        "",
        "What happens to `symbold run` under faults, load and bad input, measured against real",
        "processes on loopback: a real `redis-server` per scenario (password-protected, killed,",
        "paused, restarted, put behind a TCP proxy that delays, blackholes, resets or cuts), the",
        "fake Binance server (tests/support/fake_binance.py) and the daemon as a child process",
        "steered by signals and watched through its JSON log and sd_notify messages.",
        "",
        f"Generated by `scripts/reliability_table.py` on {meta['date']} ({meta['env']}).",
        "Re-generate it when the suite changes: `.venv/bin/python scripts/reliability_table.py`.",
        "",
        "**Data lost** is `none` when the test proved it: after the fault, Redis serves either",
        "the old snapshot byte for byte or the correctly replaced new one, whole (symbols,",
        "last_good, by_symbol and meta of one version), and the `metrics` counters equal the",
        "cycles the test caused. **Recovery** is the measured time from the fault's end to the",
        "daemon serving fresh data again, with the bound the test enforces (for SIGTERM rows:",
        "to the process exit; for rate limits: from the 429/418 to the next request). Where the",
        "next cycle would otherwise wait for the scheduler's backoff, the test forces it with",
        "SIGHUP, so the time shown is the daemon's own; in production add the backoff",
        "(`backoff_base` doubling up to `backoff_ceiling`, the ceiling for 403/451).",
        "Every daemon in these rows reaches Redis with a password in its URL; each test fails",
        "if that password shows up anywhere in the daemon's output.",
        "",
    ]
    failed = 0
    for group in GROUP_ORDER:
        in_group = [r for r in rows if r.get("group") == group]  # in the order they ran
        refs = [ref for ref in REFERENCED if ref.group == group]
        if not in_group and not refs:
            continue
        if group == "Soak":
            continue
        lines += [f"## {group}", ""]
        if in_group:
            lines += [
                "| Fault | Expected behaviour | Recovery (bound) | Data lost | Result | Test |",
                "|---|---|---|---|---|---|",
            ]
            for r in in_group:
                bound = r.get("recovery_bound_s")
                recovery = _secs(r.get("recovery_s"))
                if bound is not None:
                    recovery += f" (< {_secs(bound)})"
                outcome = r.get("outcome", "not run")
                failed += outcome not in ("passed",)
                lines.append(
                    f"| {_cell(r['fault'])} | {_cell(r['expected'])} | {recovery} | "
                    f"{_cell(r.get('data_lost', ''))} | {_result(outcome)} | "
                    f"{_test_link(r['nodeid'])} |"
                )
            lines.append("")
            notes = [r for r in in_group if r.get("details")]
            if notes:
                lines.append("Measured details:")
                lines.append("")
                for r in notes:
                    name = r["nodeid"].split("::", 1)[1]
                    detail = ", ".join(f"{k} = {v}" for k, v in sorted(r["details"].items()))
                    lines.append(f"- `{name}`: {detail}")
                lines.append("")
        if group == "Secrets":
            fault_rows = [r for r in rows if r.get("group") in ("Redis", "Upstream", "Signals")]
            leaks = (soak or {}).get("secret_leaks", 0)
            clean = all(r.get("outcome") in ("passed", "xfailed") for r in fault_rows)
            outcome = "passed" if fault_rows and clean and not leaks else "failed"
            failed += outcome != "passed"
            lines += [
                "| Fault | Expected behaviour | Result |",
                "|---|---|---|",
                f"| Password in the Redis URL, in every scenario of this document "
                f"({len(fault_rows)} daemon scenarios and the soak) | never in any log line, "
                f"traceback or other output of the daemon | {_result(outcome)} |",
                "",
            ]
        if refs:
            lines += [
                "Also proved by the rest of the suite (run in the same pass):",
                "",
                "| Fault | Expected behaviour | Result | Test |",
                "|---|---|---|---|",
            ]
            for ref in refs:
                outcomes = junit.get(ref.nodeid, [])
                if not outcomes:
                    outcome = "not run"
                elif all(o == "passed" for o in outcomes):
                    outcome = "passed"
                else:
                    outcome = next(o for o in outcomes if o != "passed")
                failed += outcome != "passed"
                count = f" ({len(outcomes)} cases)" if len(outcomes) > 1 else ""
                lines.append(
                    f"| {_cell(ref.fault)} | {_cell(ref.expected)} | {_result(outcome)}{count} "
                    f"| {_test_link(ref.nodeid)} |"
                )
            lines.append("")
    soak_rows = [r for r in rows if r.get("group") == "Soak"]
    lines += render_soak(soak, soak_rows[0] if soak_rows else None)
    failed += sum(r.get("outcome") != "passed" for r in soak_rows)
    known = [r for r in rows if r.get("outcome") == "xfailed"]
    if known:
        lines += ["## Known bugs (tests marked xfail until fixed)", ""]
        for r in known:
            lines.append(f"- {_test_link(r['nodeid'])}: {_cell(r.get('reason', ''))}")
        lines.append("")
    lines += [
        "## Known limits",
        "",
        "- With the per-market lease (issue 7), a daemon that cannot reach Redis waits as a",
        "  follower and retries every 0.5 s; while Redis answers, a follower polls the lease",
        "  every `lease.ttl / 3` (5 s by default), which bounds a takeover after the leader dies.",
        "- A Redis restarted without persistence loses the `metrics` counts and the `changes`",
        "  stream; the daemon republishes the snapshot it holds (counted as `fallback_used`",
        "  on the new server) but cannot restore history it never kept.",
        "- A write that times out on the client may still be applied by Redis afterwards",
        "  (DEBUG SLEEP rows): the snapshot stays whole and the counter is guarded by a",
        "  one-time token, but the log then says the cycle failed while Redis has the new",
        "  version. The next cycle reports it `unchanged`.",
        "",
    ]
    meta["failed"] = str(failed)
    return "\n".join(lines)


def render_soak(soak: dict[str, Any] | None, row: dict[str, Any] | None) -> list[str]:
    lines = ["## Soak", ""]
    if not soak:
        return [*lines, "Not run in this pass (`make soak`, or `--soak-seconds N` here).", ""]
    outcome = _result(row["outcome"]) if row else "not recorded"
    exact_ok = soak["exact_phase_in_process"] == soak["exact_phase_redis_delta"]
    lines += [
        f"`tests/soak/test_soak.py`, {soak['seconds']} s, seed {soak['seed']}: one in-process",
        "`Service` refreshing back to back under a seeded mix of upstream faults (500, 502",
        "HTML, resets, timeouts, truncated, corrupt gzip, gzip bomb, invalid JSON, wrong shape,",
        "empty list, 429, 60% shrinks, refused names, four good versions) while a chaos task",
        "restarts Redis (graceful and kill -9, empty), kills the daemon's connections and pauses",
        "the server, and four readers check every read in one MULTI against the version it",
        f"claims. Event loop: {soak.get('event_loop', '?')}. Run:",
        "`SYMBOLD_SOAK_SECONDS=60 .venv/bin/pytest -m soak tests/soak`.",
        "",
        f"Result: {outcome}.",
        "",
        "| Measure | Value | Bound |",
        "|---|---|---|",
        f"| cycles run | {soak['cycles']} ({soak['cycles_per_s']}/s) | "
        f">= {soak.get('cycles_per_s_min', '?')}/s |",
        f"| success + error + rejected + skipped | {soak['success']} + {soak['error']} + "
        f"{soak['rejected']} + {soak['skipped']} = "
        f"{soak['success'] + soak['error'] + soak['rejected'] + soak['skipped']} | = cycles |",
        f"| of the errors, Redis unreachable | {soak['error_redis_down']} | - |",
        f"| exact phase ({soak['exact_phase_cycles']} cycles, CLIENT KILL and short pauses): "
        f"counted in process | {_fmt(soak['exact_phase_in_process'])} | - |",
        f"| exact phase: Redis `metrics` moved by | {_fmt(soak['exact_phase_redis_delta'])} | "
        f"{'equal' if exact_ok else '**NOT EQUAL**'} |",
        f"| exact phase: cycles failed as Redis down | "
        f"{soak.get('exact_phase_redis_down', '?')} | 0 |",
        f"| chaos events | {_fmt(soak['chaos'])} | - |",
        f"| reads (complete / empty after a restart / Redis unreachable) | {soak['reads']} "
        f"({soak['complete_reads']} / {soak['empty_reads']} / {soak['unavailable_reads']}) | - |",
        f"| partial reads | {soak['partial_reads']} | 0 |",
        f"| versions seen by readers | {soak['versions_seen']} | - |",
        f"| recovery after a restart, p50 / p99 / max ({soak['restarts_measured']} restarts) | "
        f"{_secs(soak['recovery_p50_s'])} / {_secs(soak['recovery_p99_s'])} / "
        f"{_secs(soak['recovery_max_s'])} | p99 < 2 s |",
        f"| open file descriptors, growth after warm-up | {soak['fd_growth']} | "
        f"<= {soak['fd_bound']} |",
        f"| RSS (test process: daemon, fake Binance, readers), growth after warm-up | "
        f"{soak['rss_growth_mib']} MiB (from {soak['rss_start_mib']} MiB) | "
        f"<= {soak['rss_bound_mib']} MiB |",
        f"| daemon's Redis connections (CLIENT LIST), peak / at the end | "
        f"{soak['peak_daemon_connections']} / {soak['final_daemon_connections']} | "
        f"<= {soak['connections_bound']} (pool bound) / <= 4 |",
        f"| unhandled loop exceptions, 'Task exception was never retrieved' | "
        f"{len(soak['loop_exceptions'])} | 0 |",
        f"| log lines containing the Redis password | {soak.get('secret_leaks', '?')} | 0 |",
        f"| exit code | {soak['exit_code']} | 0 |",
        "",
        "Over the whole run the Redis counters are not comparable with the in-process counts:",
        "each restart empties the hash. The exact phase (no restarts) is where they must match.",
        "",
    ]
    return lines


def _fmt(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in mapping.items())


def environment() -> str:
    server = shutil.which("redis-server") or "valkey-server"
    try:
        version = subprocess.run(  # noqa: S603 - the server binary, one fixed flag
            [server, "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError):
        version = "?"
    return (
        f"Python {platform.python_version()}, {Path(server).name} {version}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="read this results JSON instead of running")
    parser.add_argument("--junit", type=Path, help="JUnit XML of the referenced tests")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--save", type=Path, help="keep results.json and junit.xml here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="symbold-rel-") as tmp:
        keep = args.save or Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        results = args.results or keep / "results.json"
        junit = args.junit
        if args.results is None:
            results.unlink(missing_ok=True)
            junit = keep / "junit.xml"
            run_pytest(["tests/reliability", *(ref.nodeid for ref in REFERENCED)], results, junit)
            if args.soak_seconds > 0:
                os.environ["SYMBOLD_SOAK_SECONDS"] = f"{args.soak_seconds:g}"
                run_pytest(["-m", "soak", "tests/soak"], results, None)
        data = json.loads(results.read_text()) if results.exists() else {"rows": {}}
        meta = {"date": dt.date.today().isoformat(), "env": environment()}
        text = render(data, junit_outcomes(junit), meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({meta['failed']} rows not passing)")
    return 0 if meta["failed"] == "0" else 1


if __name__ == "__main__":
    sys.exit(main())
