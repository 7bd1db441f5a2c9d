"""Load-generating child processes for the budget tests (run with the spawn start method).

Each worker issues random-weight requests to the limited fake Binance until a monotonic
deadline (CLOCK_MONOTONIC is system-wide on Linux, so the parent's deadline means the same
instant here), through a :class:`~daemon.budget.WeightBudget` or, for the control run,
without one. ``skew`` shifts this process's wall clock (``time.time``) by that many seconds
before the budget is imported: the budget must not care.
"""

from __future__ import annotations

import http.client
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    name: str
    redis_url: str
    fake_port: int
    end_mono: float
    use_budget: bool = True
    skew: float = 0.0
    seed: int = 0
    stop_on_ban: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    max_weight: int = 10


def run(job: Job, barrier: Any, results: Any) -> None:
    if job.skew:
        real = time.time
        time.time = lambda: real() + job.skew  # type: ignore[assignment]
    from daemon.budget import Banned, BudgetExhausted, BudgetUnavailable, WeightBudget
    from daemon.config.settings import load_settings

    rng = random.Random(job.seed)
    statuses: Counter[int] = Counter()
    outcome: dict[str, Any] = {"name": job.name, "banned_at": None, "unavailable": 0}
    budget = None
    if job.use_budget:
        loaded = load_settings(environ={}, use_default_path=False, overrides=job.overrides)
        budget = WeightBudget.from_url(job.redis_url, settings=loaded.settings)
    conn = http.client.HTTPConnection("127.0.0.1", job.fake_port, timeout=10)
    barrier.wait(30)
    sent = 0
    try:
        while time.monotonic() < job.end_mono:
            weight = rng.randint(1, job.max_weight)
            grant = None
            if budget is not None:
                left = job.end_mono - time.monotonic()
                try:
                    grant = budget.acquire(weight, timeout=max(0.0, left))
                except Banned:
                    outcome["banned_at"] = time.monotonic()
                    if job.stop_on_ban:
                        break
                    continue
                except BudgetExhausted:
                    continue
                except BudgetUnavailable:
                    outcome["unavailable"] += 1
                    time.sleep(0.05)  # fail_closed: the caller's own retry pace
                    continue
            conn.request("GET", f"/fake/weight?w={weight}", headers={"X-Client": job.name})
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
            sent += weight if response.status == 200 else 0
            if budget is not None:
                headers = response.getheaders()
                budget.observe(headers, grant=grant)
                if response.status in (429, 418):
                    budget.report_limited(response.status, headers)
    finally:
        conn.close()
        if budget is not None:
            outcome["stats"] = budget.stats()
            budget.close()
    outcome["statuses"] = dict(statuses)
    outcome["sent"] = sent
    results.put(outcome)
