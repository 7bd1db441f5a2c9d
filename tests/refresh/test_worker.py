"""The refresh worker thread: work runs off the loop, at a lower CPU priority than the loop,
and a forked child gets its own thread."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from daemon.aio import run_async
from daemon.refresh import worker
from daemon.refresh.worker import NICE, off_loop, thread_nice

pytestmark = pytest.mark.timeout(60)

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="per-thread nice values are Linux's"
)


def _thread_name() -> str:
    return threading.current_thread().name


def _name_and_nice() -> str:
    return f"{threading.current_thread().name} {thread_nice()}"


async def test_work_runs_in_the_refresh_thread_not_the_loop() -> None:
    name = await off_loop(_thread_name)
    assert name.startswith("symbold-refresh")
    assert name != threading.current_thread().name


@linux_only
async def test_the_worker_runs_nicer_than_the_loop_and_the_loop_keeps_its_priority() -> None:
    loop_nice = thread_nice()
    assert loop_nice is not None
    assert await off_loop(thread_nice) == min(19, loop_nice + NICE)
    assert thread_nice() == loop_nice  # only the worker thread was changed, not the process
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == loop_nice


@linux_only
def test_a_refused_priority_change_leaves_the_thread_working(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(which: int, who: int, value: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(worker.os, "setpriority", refuse)
    seen: list[int | None] = []

    def initialized_then_worked() -> None:
        worker._lower_priority()  # what the executor runs first in its thread
        seen.append(thread_nice())

    thread = threading.Thread(target=initialized_then_worked)
    thread.start()
    thread.join(30)
    assert seen == [thread_nice()]  # ran, at the priority it was started with


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_work_in_a_thread_of_its_own() -> None:
    run_async(off_loop(_thread_name))  # the parent's thread exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: would hang on the parent's (absent) thread without the pid check
        try:
            os.write(write, run_async(off_loop(_name_and_nice)).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as answer:
            got = answer.read().decode()
    finally:
        os.waitpid(pid, 0)
    name, nice = got.split(" ")
    assert name.startswith("symbold-refresh")
    if sys.platform == "linux":  # the child's new thread is lowered as well
        loop_nice = thread_nice()
        assert loop_nice is not None
        assert int(nice) == min(19, loop_nice + NICE)
