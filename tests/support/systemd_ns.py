"""A real systemd, as PID 1 of a private namespace, for integration tests of the shipped unit.

The machines this project runs on are containers whose PID 1 is not systemd, but as root a real
systemd can run as PID 1 of new pid+mount+uts+ipc+cgroup namespaces and manage a unit exactly as
a host would (notify, watchdog, reload, credentials, journald). The recipe and its traps are in
the team's notes on running systemd in a namespace; in short:

- every mount is made inside the new mount namespace, after ``mount --make-rprivate /``, so
  nothing reaches the host: a fresh tmpfs on ``/run`` and ``/tmp`` (the work folder is carried
  over by a bind move), overlays on ``/etc`` and ``/opt`` whose writes land in the work folder,
  a tmpfs for the journal, a cgroup2 hierarchy of its own;
- ``mount --make-rshared /`` just before systemd starts, or ``LoadCredential=`` fails;
- a small unit folder (``SYSTEMD_UNIT_PATH``): journald and the targets boot needs, copied from
  ``/lib/systemd/system``, empty stand-ins for targets they name, and a target of our own; with
  the distribution's full unit set systemd tries to boot a whole OS and stalls.

The network namespace is the host's, so a server on the host's 127.0.0.1 is reachable from a
service inside and the other way round.

Usage::

    reason = unavailable_reason()          # None, or why this machine cannot do it
    with SystemdNamespace(units={"symbold.service": text}) as ns:
        ns.write_file("/etc/symbold/redis_url", url, mode=0o600)
        ns.systemctl("start", "symbold")
        ns.journalctl("-u", "symbold", "-o", "json")

Teardown (in ``close``, always): ``systemctl exit``, then wait for the ``unshare`` process we
started; if systemd does not go within the bound, SIGKILL the namespace's PID 1 (which the
kernel turns into the end of every process in that namespace) and wait again. Nothing is ever
killed by name, and nothing outside the work folder is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SYSTEMD = Path("/lib/systemd/systemd")
SYSTEM_UNITS = Path("/lib/systemd/system")

# Copied from the distribution: journald and what boot and `systemctl exit` need.
COPIED_UNITS = (
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
    "systemd-journald-audit.socket",
    "basic.target",
    "sysinit.target",
    "sockets.target",
    "shutdown.target",
    "umount.target",
    "final.target",
    "exit.target",
    "systemd-exit.service",
)
# Targets those units (and the unit under test) name: empty stand-ins that are always reached.
STANDIN_TARGETS = (
    "timers.target",
    "paths.target",
    "slices.target",
    "local-fs.target",
    "swap.target",
    "emergency.target",
    "network.target",
    "network-online.target",
    "multi-user.target",
)

BOOT_SH = """\
#!/bin/sh
# PID 1 of a new pid+mount+uts+ipc+cgroup namespace until it execs systemd; every mount here is
# local to that namespace.
set -e
W={work}
mount --make-rprivate /
# fresh /run; a private /tmp that keeps the work folder (bind-moved across)
mount -t tmpfs -o mode=755 tmpfs /run
mkdir /run/work-stage && mount --bind "$W" /run/work-stage
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p "$W" && mount --move /run/work-stage "$W" && rmdir /run/work-stage
# /etc and /opt: overlays whose writes land in the work folder
mount -t overlay overlay -o lowerdir=/etc,upperdir=$W/ovl/etc/upper,workdir=$W/ovl/etc/work /etc
mount -t overlay overlay -o lowerdir=/opt,upperdir=$W/ovl/opt/upper,workdir=$W/ovl/opt/work /opt
mount -t tmpfs tmpfs /var/log/journal
# an empty /etc/systemd/system, first in the unit path, as on a fresh host: the host's own
# enablement links (timers, sockets, services) must not be pulled in
mount --bind "$W/system" /etc/systemd/system
# a writable unified cgroup hierarchy, rooted at our cgroup namespace
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# PID 1 logs to the journal; anything it prints before journald runs goes to this file
: > "$W/console.log"; mount --bind "$W/console.log" /dev/console
hostname {hostname}
# systemd moves credential mounts in from a helper namespace: propagation must be shared
# (inside this namespace only)
mount --make-rshared /
exec env -i container={hostname} SYSTEMD_UNIT_PATH="/etc/systemd/system:$W/units" \\
  SYSTEMD_GENERATOR_PATH="$W/gen" SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$W/gen" \\
  /lib/systemd/systemd --system --unit={target} --log-target=journal --log-level=info
"""


class NamespaceError(RuntimeError):
    """The namespace did not come up, or a command in it failed."""


def unavailable_reason() -> str | None:
    """Why a real systemd cannot be booted here (None when it can)."""
    if os.name != "posix" or not Path("/proc/self/ns/pid").exists():
        return "needs Linux namespaces"
    if os.geteuid() != 0:
        return "needs root (unshare of pid/mount/cgroup namespaces and systemd as PID 1)"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (util-linux; scripts/ci-deps.sh installs it)"
    if not SYSTEMD.exists() or shutil.which("systemctl") is None:
        return "systemd is not installed (scripts/ci-deps.sh installs it)"
    missing = [u for u in COPIED_UNITS[:6] if not (SYSTEM_UNITS / u).exists()]
    if missing:
        return f"systemd's units are missing from {SYSTEM_UNITS}: {', '.join(missing)}"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup", "true"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare of pid/mount/cgroup namespaces is refused here: {probe.stderr.strip()}"
    return None


def systemd_version() -> int:
    out = subprocess.run(
        [str(SYSTEMD), "--version"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return int(out.split()[1])


class SystemdNamespace:
    """systemd as PID 1 of private namespaces, driven from the host through nsenter."""

    def __init__(
        self,
        *,
        units: Mapping[str, str] = {},
        hostname: str = "symbold-test",
        boot_timeout: float = 60.0,
    ) -> None:
        """`units`: unit files (name -> text) in the boot unit folder, wanted by the boot target.

        A unit under test is better installed the way an operator does, after boot: with
        `write_file` under /etc/systemd/system (drop-ins in NAME.d/) and `daemon-reload`.
        """
        self.units = dict(units)
        self.hostname = hostname
        self.boot_timeout = boot_timeout
        self.target = "symbold-test.target"
        self.work = Path(tempfile.mkdtemp(prefix="symbold-sd-", dir="/tmp"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # the namespace's systemd, as the host sees it
        self._log = None

    # -- layout ----------------------------------------------------------------------------

    def _lay_out(self) -> None:
        w = self.work
        for sub in (
            "units",
            "gen",
            "system",
            "ovl/etc/upper",
            "ovl/etc/work",
            "ovl/opt/upper",
            "ovl/opt/work",
        ):
            (w / sub).mkdir(parents=True, exist_ok=True)
        # The work folder is reached through /tmp by the namespace's root only.
        w.chmod(0o755)
        units = w / "units"
        for name in COPIED_UNITS:
            src = SYSTEM_UNITS / name
            if src.exists():
                shutil.copyfile(src, units / name)
        for name in STANDIN_TARGETS:
            (units / name).write_text("[Unit]\nDescription=stand-in\n")
        wanted = " ".join(self.units)
        (units / self.target).write_text(
            "[Unit]\nDescription=symbold integration test\n"
            "Requires=basic.target\nAfter=basic.target\n"
            "Wants=systemd-journald.service\n"
            f"{'Wants=' + wanted if wanted else ''}\n"
        )
        for name, text in self.units.items():
            (units / name).write_text(text)
        boot = BOOT_SH.format(work=w, hostname=self.hostname, target=self.target)
        (w / "boot.sh").write_text(boot)

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> SystemdNamespace:
        self._lay_out()
        self._log = (self.work / "unshare.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--ipc",
                "--cgroup",
                "--mount-proc",
                "sh",
                str(self.work / "boot.sh"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_booted()
        except BaseException:
            self.close()
            raise
        return self

    def _find_init(self) -> int | None:
        """The child that unshare forked (it execs systemd), as the host numbers it."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        with contextlib.suppress(OSError):
            kids = path.read_text().split()
            if kids:
                return int(kids[0])
        return None

    def _wait_booted(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NamespaceError(f"unshare exited {self.proc.returncode}: {self.diagnostics()}")
            if self.pid is None:
                self.pid = self._find_init()
            elif _comm(self.pid) == "systemd":
                out = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
                state = out.stdout.strip()
                if state in ("running", "degraded"):
                    return
            # Bounded poll of an external process's state: there is no event to wait on.
            time.sleep(0.2)
        raise NamespaceError(
            f"systemd not up in {self.boot_timeout} s ({state or 'no state'}): {self.diagnostics()}"
        )

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None and self.pid is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self.run(["systemctl", "exit"], check=False, timeout=15)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    # PID 1 of the namespace: its end takes every process in it along.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
            if self.proc.poll() is None:
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()  # our own unshare process, by its pid
                    self.proc.wait(10)
        finally:
            self.proc = None
            if self._log is not None:
                self._log.close()
            if not os.environ.get("SYMBOLD_KEEP_NS"):
                shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> SystemdNamespace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving it ------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in every namespace of the booted systemd."""
        assert self.pid is not None, "not started"
        if isinstance(input, bytes):
            input = input.decode()
        out = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise NamespaceError(
                f"{' '.join(argv)} exited {out.returncode}: {out.stderr.strip()} {out.stdout}"
            )
        return out

    def systemctl(self, *args: str, check: bool = True, timeout: float = 60.0) -> str:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout).stdout

    def journalctl(self, *args: str, timeout: float = 30.0) -> str:
        return self.run(["journalctl", "--no-pager", *args], timeout=timeout).stdout

    def journal(self, unit: str, *, cursor: str | None = None) -> list[dict[str, Any]]:
        """A unit's journal entries (and systemd's about it) as dicts, after `cursor`."""
        args = [
            "-o",
            "json",
            "--output-fields=MESSAGE,PRIORITY,_PID,UNIT,SYSLOG_IDENTIFIER,"
            "__CURSOR,_SYSTEMD_UNIT,JOB_RESULT,EXIT_STATUS,MESSAGE_ID",
        ]
        args += [f"--after-cursor={cursor}"] if cursor else []
        out = self.journalctl("--unit", unit, *args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def cursor(self) -> str:
        """A cursor at the journal's current end ("" when it is empty)."""
        out = self.journalctl("-n", "1", "-o", "json", "--output-fields=__CURSOR")
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return str(json.loads(lines[-1])["__CURSOR"]) if lines else ""

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def write_file(self, path: str, content: bytes | str, *, mode: int = 0o644) -> None:
        """Create or replace a file inside the namespace (through its overlays)."""
        self.run(["install", "-d", "-m", "0755", str(Path(path).parent)])
        self.run(
            [
                "sh",
                "-c",
                'umask 077; cat > "$1.new" && chmod "$2" "$1.new" && mv "$1.new" "$1"',
                "sh",
                path,
                f"{mode:o}",
            ],
            input=content,
        )

    def diagnostics(self) -> str:
        """The tail of the console and unshare logs, for failure messages."""
        parts = []
        for name in ("unshare.log", "console.log"):
            with contextlib.suppress(OSError):
                text = (self.work / name).read_text(errors="replace")
                parts.append(f"--- {name} ---\n{text[-3000:]}")
        return "\n".join(parts)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
