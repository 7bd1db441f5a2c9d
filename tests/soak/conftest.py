"""The soak runs only when asked for: ``-m soak`` or ``SYMBOLD_SOAK_SECONDS`` set.

``make test`` (plain ``pytest``) collects it and reports it skipped, so the default suite stays
fast; ``make soak`` runs ``pytest -m soak tests/soak``. The soak's event loop is uvloop, as in
``symbold run`` (daemon/oneshot.py), so transport behaviour matches production.
"""

from __future__ import annotations

import os

import pytest
import uvloop

from tests.support.reliability_results import (  # noqa: F401 - fixture and hooks, re-exported for pytest
    pytest_runtest_makereport,
    pytest_sessionfinish,
    reliability,
)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """The soak runs on uvloop, the loop `symbold run` uses in production."""
    return {"uvloop": uvloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: the long randomized soak (run with -m soak)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "soak" in (config.getoption("markexpr", "") or "") or os.environ.get(
        "SYMBOLD_SOAK_SECONDS"
    )
    if asked:
        return
    skip = pytest.mark.skip(reason="the soak runs with -m soak or SYMBOLD_SOAK_SECONDS (make soak)")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
