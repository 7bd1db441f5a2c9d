"""daemon.allocator: glibc's controls run where glibc is, and do nothing elsewhere."""

from __future__ import annotations

import os

import pytest

from daemon import allocator

pytestmark = pytest.mark.timeout(10)

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


@pytest.mark.skipif(not GLIBC, reason="the C library here is not glibc")
def test_on_glibc_both_controls_run() -> None:
    assert allocator.trim_heap() is True
    assert allocator.fix_mmap_threshold(1024 * 1024) is True


def test_without_glibc_both_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator._glibc.cache_clear()
    monkeypatch.setattr(os, "confstr", lambda name: None)
    try:
        assert allocator.trim_heap() is False
        assert allocator.fix_mmap_threshold(1024 * 1024) is False
    finally:
        allocator._glibc.cache_clear()
