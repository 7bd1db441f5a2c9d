"""Run `symbold` as a real child process and follow its JSON log lines as events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Event = dict[str, Any]


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without anything that would steer symbold."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "SYMBOLD_", "JOURNAL_", "NOTIFY_", "WATCHDOG_"))
        and k != "CELERY_BROKER_URL"
    }
    env.update(extra)
    return env


class DaemonProcess:
    """`python -m daemon ARGS` with JSON logs on stdout, read line by line as events."""

    def __init__(self, *args: str, env: Mapping[str, str], config: Path | None = None) -> None:
        self.args = list(args)
        if config is not None:
            self.args += ["--config", str(config)]
        self.env = clean_env({**env, "SYMBOLD_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[Event] = []
        self.raw: list[str] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> DaemonProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            *self.args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode(errors="replace").rstrip("\n")
            async with self._changed:
                self.raw.append(text)
                try:
                    event = json.loads(text)
                except ValueError:
                    event = {"event": "<non-json>", "text": text}
                if isinstance(event, dict):
                    self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def count(self, name: str, **fields: Any) -> int:
        return sum(
            1
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        )

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds (re-checked at every log line); wrap in a timeout."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate() or self._exited())

        if not predicate():
            raise AssertionError("daemon exited before the condition held:\n" + self.output())

    async def wait_event(self, name: str, n: int = 1, **fields: Any) -> None:
        await self.wait_for(lambda: self.count(name, **fields) >= n)

    def _exited(self) -> bool:
        return self._reader is not None and self._reader.done()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.proc is not None
        assert self._reader is not None
        code = await self.proc.wait()
        await self._reader
        return code

    def output(self) -> str:
        return "\n".join(self.raw)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` to completion in a clean environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_cli_journal(
    *args: str, env: Mapping[str, str] | None = None, matching: bool = True
) -> tuple[int, list[str]]:
    """`python -m daemon ARGS` with stdout and stderr on one pipe, as systemd connects them to
    the journal, and ``JOURNAL_STREAM`` set to that pipe's device:inode (`matching`) or to
    another pipe's (an inherited variable that names some other stream).
    Returns the exit code and the output lines."""
    read_fd, write_fd = os.pipe()
    other_read, other_write = os.pipe()
    named = os.fstat(write_fd if matching else other_write)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *args],
            env=clean_env({**(env or {}), "JOURNAL_STREAM": f"{named.st_dev}:{named.st_ino}"}),
            stdout=write_fd,
            stderr=write_fd,
        )
    finally:
        os.close(write_fd)
    try:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as out:
            text = out.read()  # until the child closes it: it has exited
        code = proc.wait(timeout=30)
    finally:
        os.close(other_read)
        os.close(other_write)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, text.splitlines()
