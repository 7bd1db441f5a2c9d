"""The refresh worker thread: work runs off the loop, and a forked child gets its own thread."""

from __future__ import annotations

import os
import threading

import pytest

from daemon.aio import run_async
from daemon.refresh.worker import off_loop

pytestmark = pytest.mark.timeout(60)


def _thread_name() -> str:
    return threading.current_thread().name


async def test_work_runs_in_the_refresh_thread_not_the_loop() -> None:
    name = await off_loop(_thread_name)
    assert name.startswith("symbold-refresh")
    assert name != threading.current_thread().name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_work_in_a_thread_of_its_own() -> None:
    run_async(off_loop(_thread_name))  # the parent's thread exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: would hang on the parent's (absent) thread without the pid check
        try:
            os.write(write, run_async(off_loop(_thread_name)).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as answer:
            got = answer.read().decode()
    finally:
        os.waitpid(pid, 0)
    assert got.startswith("symbold-refresh")
