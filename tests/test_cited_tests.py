"""Every test that the documentation and the reliability table cite exists where they say.

docs/reliability.md is generated from scripts/reliability_table.py, and the README and docs
name tests as evidence; when a test file is split or renamed, a stale name would silently turn
a row into "not run" or a dead link. This reads the citations as text (no servers, no pytest
run): ``tests/<path>.py::<test name>`` node IDs, ``[`<test name>`](../tests/<path>.py)`` links
and bare ``tests/<path>.py`` paths, and checks each against the test files' syntax trees.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE_SCRIPT = ROOT / "scripts" / "reliability_table.py"

NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")
LINK = re.compile(r"\[`(test_\w+)`\]\(\.\./(tests/[\w/]+\.py)\)")
PATH = re.compile(r"tests/[\w/]+\.py")


def citing_files() -> list[Path]:
    """The files whose citations must hold: the table script, the README and docs/*.md."""
    return [TABLE_SCRIPT, ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@cache
def collected_tests(path: str) -> frozenset[str]:
    """Names of the module-level test functions that pytest collects from `path`
    (relative to the repository root); empty when the file does not exist."""
    file = ROOT / path
    if not file.is_file():
        return frozenset()
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    )


def broken_citations(text: str) -> list[str]:
    """The citations in `text` that point at no file or at no test function in that file."""
    broken: list[str] = []
    for path, name in NODE_ID.findall(text):
        if name not in collected_tests(path):
            broken.append(f"{path}::{name}")
    for name, path in LINK.findall(text):
        if name not in collected_tests(path):
            broken.append(f"[{name}](../{path})")
    for path in PATH.findall(text):
        if not (ROOT / path).is_file():
            broken.append(path)
    return broken


def referenced_node_ids() -> list[str]:
    """The node IDs of REFERENCED in scripts/reliability_table.py, read by loading the script."""
    spec = importlib.util.spec_from_file_location("reliability_table", TABLE_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while they are defined.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return [ref.nodeid for ref in module.REFERENCED]


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_test_exists(path: Path) -> None:
    assert broken_citations(path.read_text(encoding="utf-8")) == []


def test_every_referenced_row_names_a_test_that_exists() -> None:
    node_ids = referenced_node_ids()
    assert len(node_ids) >= 20  # the table really was read
    for node_id in node_ids:
        path, _, name = node_id.partition("::")
        assert name in collected_tests(path), node_id


def test_the_checker_finds_stale_citations() -> None:
    # A citation of a real test passes; each way a citation can go stale is reported.
    real = "tests/test_cited_tests.py::test_the_checker_finds_stale_citations"
    assert broken_citations(real) == []
    stale = (
        "tests/test_cited_tests.py::test_that_was_renamed\n"
        "[`test_every_cited_test_exists`](../tests/moved_away.py)\n"
        "see tests/refresh/test_cycle_was_split.py\n"
    )
    assert broken_citations(stale) == [
        "tests/test_cited_tests.py::test_that_was_renamed",
        "[test_every_cited_test_exists](../tests/moved_away.py)",
        "tests/moved_away.py",
        "tests/refresh/test_cycle_was_split.py",
    ]
