"""Which Redis URL to use and in what spelling: resolution order, parsing, validation.

Pure functions: no I/O, no logging. The resolution order is the legacy one with an explicit
setting in front: settings (file, ``SYMBOLD_REDIS_URL`` or ``--redis-url``) > ``REDIS_URL`` >
``CELERY_BROKER_URL`` > ``redis://localhost:6379/0``.

Accepted spellings (the scheme decides the mode; ``[redis] mode`` can also turn a plain
``redis://`` URL into a cluster seed or, with ``[redis] sentinels``, a sentinel setup):

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS), ``unix:///path?db=N``;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster://`` for
  TLS): Redis Cluster, every listed node a startup node; db must be 0;
- ``sentinel://[[user]:password@]host:port[;sentinel://host:port...][/db]``: Celery/kombu's
  spelling. As in kombu, the password is the *primary's* (data) password, and the service
  name comes from elsewhere (``[redis] service_name``, Celery's ``master_name`` transport
  option) or from a ``?master_name=`` / ``?service_name=`` parameter;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...][/service_name[/db]]``: the
  ``redis-sentinel-url`` spelling.

Sentinels that require a password of their own take it from the ``sentinel_password`` (and
``sentinel_username``) parameter of any of the sentinel forms, so every secret stays in the
URL (the systemd credential), never in the config file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from daemon.config.settings import DEFAULT_REDIS_URL, ConfigError
from daemon.redaction import (
    authority,
    is_secret_param,
    redact_one_url,
    scheme_only,
    secret_forms,
    url_parts,
    written_password,
)

SUPPORTED_SCHEMES = (
    "redis",
    "rediss",
    "unix",
    "redis+cluster",
    "rediss+cluster",
    "sentinel",
    "redis+sentinel",
)
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("sentinel", "redis+sentinel")
# Spellings other libraries use that symbold does not accept (TLS to sentinels, mostly).
_REFUSED_SENTINEL_SCHEMES = ("sentinels", "rediss+sentinel", "redis-sentinel")
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379

Mode = Literal["standalone", "cluster", "sentinel"]

# Celery/kombu spell TLS verification the way the ssl module does; redis-py wants the short words.
_CELERY_CERT_REQS = {
    "CERT_REQUIRED": "required",
    "CERT_OPTIONAL": "optional",
    "CERT_NONE": "none",
}

# Parameters of the sentinel forms that symbold consumes itself (not passed to redis-py).
_SENTINEL_PARAMS = frozenset(
    {"master_name", "service_name", "sentinel_password", "sentinel_username"}
)

# TLS parameters a rediss+cluster:// URL may carry (redis-py's names).
_TLS_PARAMS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile"})


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A validated Redis URL and where it came from.

    `url` holds the secret and must never be logged: use `redacted` or `describe()`.
    `host`/`port` are the first node a cluster or sentinel URL names; `nodes` has them all.
    """

    url: str = field(repr=False)
    source: str
    scheme: str
    host: str
    port: int | None
    db: int
    username: str | None
    password: str | None = field(repr=False)
    path: str | None
    tls_verify: str | None
    # What the URL itself says; [redis] mode may still turn a standalone URL into more.
    mode: Mode = "standalone"
    # Cluster startup nodes or sentinel addresses, in the order given (empty: standalone).
    nodes: tuple[tuple[str, int], ...] = ()
    # The sentinels' name for the primary, when the URL carries it.
    service_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    # TLS options other than ssl_cert_reqs (rediss+cluster:// only; plain URLs pass them on).
    tls_options: tuple[tuple[str, str], ...] = ()

    @property
    def redacted(self) -> str:
        return redact_one_url(self.url)

    @property
    def tls(self) -> bool:
        return self.scheme in ("rediss", "rediss+cluster")

    def describe(self) -> dict[str, object]:
        """Fields that are safe to log: never the password."""
        out: dict[str, object] = {"scheme": self.scheme, "source": self.source, "db": self.db}
        if self.scheme == "unix":
            out["path"] = self.path
        else:
            out["host"] = self.host
            out["port"] = self.port
        if self.mode != "standalone":
            out["mode"] = self.mode
            out["nodes"] = [format_address(host, port) for host, port in self.nodes]
        if self.service_name:
            out["service_name"] = self.service_name
        if self.username:
            out["username"] = self.username
        out["password"] = "set" if self.password else "none"
        if self.mode == "sentinel":
            out["sentinel_password"] = "set" if self.sentinel_password else "none"
        if self.tls_verify is not None:
            out["tls_verify"] = self.tls_verify
        return out

    def secrets(self) -> tuple[str, ...]:
        """Literal secret strings that a log scrubber should mask: each password decoded, as
        written in the URL and percent-encoded, and every secret query value. Strings shorter
        than four characters are left out (they would mask ordinary words)."""
        decoded: list[str | None] = [self.password, self.sentinel_password]
        written: list[str | None] = [written_password(self.url)]
        for segment in url_parts(self.url):
            written.append(written_password(segment))
            for key, value in parse_qsl(urlsplit(segment).query, keep_blank_values=True):
                if is_secret_param(key):
                    decoded.append(value)
        return secret_forms(decoded, written)


def resolve_redis_url(
    explicit: str, explicit_origin: str | None, environ: Mapping[str, str]
) -> RedisURL:
    """Pick the URL by the documented order, then validate and normalize it.

    Raises ConfigError (naming the source, never the secret) for an unsupported scheme or a
    malformed URL.
    """
    if explicit:
        url, source = explicit, explicit_origin or "settings"
    elif environ.get("REDIS_URL"):
        url, source = environ["REDIS_URL"], "$REDIS_URL"
    elif environ.get("CELERY_BROKER_URL"):
        url, source = environ["CELERY_BROKER_URL"], "$CELERY_BROKER_URL"
    else:
        url, source = DEFAULT_REDIS_URL, "default"
    return parse_redis_url(url, source)


_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")


def parse_redis_url(url: str, source: str) -> RedisURL:
    """Validate `url` and rewrite Celery's TLS spelling into redis-py's."""
    url = url.strip()
    match = _SCHEME.match(url)
    scheme = match.group("scheme").lower() if match else ""
    _refuse_split_userinfo(url, source)
    if scheme in _CLUSTER_SCHEMES:
        return _parse_cluster(url, source, scheme)
    if scheme == "sentinel":
        return _parse_celery_sentinel(url, source)
    if scheme == "redis+sentinel":
        return _parse_redis_sentinel(url, source)
    if scheme in _REFUSED_SENTINEL_SCHEMES:
        raise ConfigError(
            f"redis URL from {source} uses {scheme}://, which symbold does not support "
            "(no TLS to sentinels yet); use sentinel://host:port;sentinel://host:port/db "
            "or redis+sentinel://host:port,host:port/service_name/db"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ConfigError(
            f"redis URL from {source} is malformed ({_parse_failure(err)}): {scheme_only(url)}"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ConfigError(
            f"redis URL from {source} has {shown}; expected one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )

    query = parse_qsl(parts.query, keep_blank_values=True)
    rewritten, tls_verify = _tls_params(query, source)
    if scheme == "rediss" and tls_verify is None:
        tls_verify = "required"

    host = parts.hostname or ""
    if scheme != "unix" and not host:
        raise ConfigError(f"redis URL from {source} names no host: {scheme_only(url)}")
    if scheme == "unix" and not parts.path:
        raise ConfigError(f"redis URL from {source} names no socket path")

    db_text = dict(query).get("db")
    if scheme != "unix" and parts.path not in ("", "/"):
        db_text = parts.path.lstrip("/")
    db = _db(db_text, source)

    return RedisURL(
        url=_rebuilt(parts, scheme, rewritten),
        source=source,
        scheme=scheme,
        host=host,
        port=port if scheme != "unix" else None,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=parts.path if scheme == "unix" else None,
        tls_verify=tls_verify,
    )


def _rebuilt(parts: SplitResult, scheme: str, query: list[tuple[str, str]]) -> str:
    """The URL again from its parts, with `scheme` and the rewritten `query` (a password
    stays percent-encoded as given)."""
    return urlunsplit(
        (scheme, parts.netloc, parts.path, urlencode(query, safe="/:"), parts.fragment)
    )


def _refuse_split_userinfo(url: str, source: str) -> None:
    """An ``@`` after the host part means a password with a raw ``/``, ``?`` or ``#``: the
    parser would read part of the password as host, path or query and might echo it in an
    error. Refuse up front, showing nothing beyond the scheme."""
    for segment in url_parts(url):
        start, end = authority(segment)
        if start >= 0 and "@" in segment[end:]:
            raise ConfigError(
                f"redis URL from {source}: an '@' follows the host part; a password containing "
                f"'/', '?' or '#' must be percent-encoded (%2F, %3F, %23): {scheme_only(url)}"
            )


def _parse_failure(err: ValueError) -> str:
    """The parser's reason in our words: its own message may quote part of the URL."""
    text = str(err)
    if "out of range" in text:
        return "port out of range"
    if "Port" in text:
        return "port is not a number"
    if "IPv6" in text:
        return "invalid IPv6 address"
    return "not a URL"


def _tls_params(
    query: list[tuple[str, str]], source: str
) -> tuple[list[tuple[str, str]], str | None]:
    """Rewrite Celery's ssl_cert_reqs spelling; returns (query, tls_verify)."""
    tls_verify: str | None = None
    rewritten: list[tuple[str, str]] = []
    for key, value in query:
        if key == "ssl_cert_reqs":
            value = _CELERY_CERT_REQS.get(value, value).lower()
            if value not in ("required", "optional", "none"):
                raise ConfigError(
                    f"redis URL from {source}: ssl_cert_reqs={value!r} is not one of "
                    "required, optional, none (or Celery's CERT_REQUIRED/CERT_OPTIONAL/CERT_NONE)"
                )
            tls_verify = value
        rewritten.append((key, value))
    return rewritten, tls_verify


def _db(text: str | None, source: str) -> int:
    if text is None or text == "":
        return 0
    try:
        db = int(text)
    except ValueError:
        raise ConfigError(f"redis URL from {source}: database {text!r} is not a number") from None
    if db < 0:
        raise ConfigError(f"redis URL from {source}: database {db} is negative")
    return db


def parse_address(text: str, default_port: int, what: str) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` -> (host, port); ConfigError naming `what`."""
    text = text.strip()
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise ConfigError(f"{what}: {text!r} is not host:port ({err})") from None
    if not host or parts.path or parts.query or parts.username or parts.password:
        raise ConfigError(f"{what}: {text!r} is not host:port")
    return host, port or default_port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """Split ``user:password@hosts`` -> (username, password, hosts); values unquoted."""
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        return None, None, netloc
    user, colon, password = userinfo.partition(":")
    if not colon:
        # ``redis://secret@host``: redis-py and Celery read a lone userinfo as the password.
        return None, unquote(userinfo) or None, hosts
    return unquote(user) or None, unquote(password) or None, hosts


def _nodes(hosts: str, default_port: int, source: str, scheme: str) -> tuple[tuple[str, int], ...]:
    found = tuple(
        parse_address(h, default_port, f"redis URL from {source} ({scheme}://)")
        for h in hosts.split(",")
        if h.strip()
    )
    if not found:
        raise ConfigError(f"redis URL from {source} ({scheme}://) names no host")
    return found


def _sentinel_params(query: list[tuple[str, str]], source: str, scheme: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in query:
        if key not in _SENTINEL_PARAMS and key != "db":
            raise ConfigError(
                f"redis URL from {source}: parameter {key!r} is not supported with {scheme}:// "
                "(accepted: " + ", ".join(sorted(_SENTINEL_PARAMS | {"db"})) + ")"
            )
        if key in params and params[key] != value:
            raise ConfigError(f"redis URL from {source}: {key} is given twice, differently")
        params[key] = value
    for a, b in (("master_name", "service_name"),):
        if a in params and b in params and params[a] != params[b]:
            raise ConfigError(f"redis URL from {source}: {a} and {b} disagree")
    return params


def _parse_cluster(url: str, source: str, scheme: str) -> RedisURL:
    parts = urlsplit(url)
    username, password, hosts = _userinfo(parts.netloc)
    nodes = _nodes(hosts, DEFAULT_PORT, source, scheme)
    query = parse_qsl(parts.query, keep_blank_values=True)
    rewritten, tls_verify = _tls_params(query, source)
    tls_options: list[tuple[str, str]] = []
    for key, value in rewritten:
        if key == "ssl_cert_reqs":
            continue
        if key in _TLS_PARAMS and scheme == "rediss+cluster":
            tls_options.append((key, value))
        elif key != "db":
            raise ConfigError(
                f"redis URL from {source}: parameter {key!r} is not supported with {scheme}://"
            )
    if scheme == "redis+cluster" and tls_verify is not None:
        raise ConfigError(f"redis URL from {source}: ssl_cert_reqs needs rediss+cluster:// (TLS)")
    if scheme == "rediss+cluster" and tls_verify is None:
        tls_verify = "required"
    db = _db(parts.path.lstrip("/") or dict(query).get("db"), source)
    if db != 0:
        raise ConfigError(f"redis URL from {source}: a Redis Cluster has only database 0, not {db}")
    return RedisURL(
        url=_rebuilt(parts, scheme, rewritten),
        source=source,
        scheme=scheme,
        host=nodes[0][0],
        port=nodes[0][1],
        db=0,
        username=username,
        password=password,
        path=None,
        tls_verify=tls_verify,
        mode="cluster",
        nodes=nodes,
        tls_options=tuple(tls_options),
    )


def _parse_celery_sentinel(url: str, source: str) -> RedisURL:
    """``sentinel://[:pw@]h:p;sentinel://[:pw@]h:p/db`` as Celery/kombu read it."""
    nodes: list[tuple[str, int]] = []
    creds: set[tuple[str | None, str | None]] = set()
    dbs: set[int] = set()
    query: list[tuple[str, str]] = []
    for segment in url_parts(url):
        segment = segment.strip()
        if not segment:
            continue
        match = _SCHEME.match(segment)
        if not match or match.group("scheme").lower() != "sentinel":
            raise ConfigError(
                f"redis URL from {source}: every ';'-separated part of a sentinel:// URL must "
                f"be sentinel://host:port, got {scheme_only(segment)!r}"
            )
        parts = urlsplit(segment)
        username, password, hosts = _userinfo(parts.netloc)
        if username or password:
            creds.add((username, password))
        nodes.extend(_nodes(hosts, DEFAULT_SENTINEL_PORT, source, "sentinel"))
        if parts.path not in ("", "/"):
            db_text = parts.path.strip("/")
            if not db_text.isdigit():
                raise ConfigError(
                    f"redis URL from {source}: sentinel:// takes /db (a number) after the last "
                    f"sentinel, not {db_text!r}; give the service name as redis.service_name "
                    "(Celery's master_name) or ?master_name=NAME"
                )
            dbs.add(_db(db_text, source))
        query.extend(parse_qsl(parts.query, keep_blank_values=True))
    if not nodes:
        raise ConfigError(f"redis URL from {source} (sentinel://) names no sentinel")
    if len(creds) > 1:
        raise ConfigError(
            f"redis URL from {source}: the sentinel:// parts carry different credentials"
        )
    params = _sentinel_params(query, source, "sentinel")
    if "db" in params:
        dbs.add(_db(params["db"], source))
    if len(dbs) > 1:
        raise ConfigError(f"redis URL from {source}: the sentinel:// parts name different dbs")
    username, password = creds.pop() if creds else (None, None)
    return _sentinel_url(url, source, "sentinel", nodes, username, password, dbs, params, None)


def _parse_redis_sentinel(url: str, source: str) -> RedisURL:
    """``redis+sentinel://[:pw@]h:p,h:p[/service_name[/db]][?...]``."""
    parts = urlsplit(url)
    username, password, hosts = _userinfo(parts.netloc)
    nodes = _nodes(hosts, DEFAULT_SENTINEL_PORT, source, "redis+sentinel")
    segments = [unquote(p) for p in parts.path.strip("/").split("/") if p]
    if len(segments) > 2:
        raise ConfigError(
            f"redis URL from {source}: redis+sentinel:// takes /service_name[/db], "
            f"not {len(segments)} path parts"
        )
    params = _sentinel_params(
        parse_qsl(parts.query, keep_blank_values=True), source, "redis+sentinel"
    )
    dbs = {_db(segments[1], source)} if len(segments) == 2 else set()
    if "db" in params:
        dbs.add(_db(params["db"], source))
    if len(dbs) > 1:
        raise ConfigError(f"redis URL from {source}: db is given twice, differently")
    service = segments[0] if segments else None
    return _sentinel_url(
        url, source, "redis+sentinel", nodes, username, password, dbs, params, service
    )


def _sentinel_url(
    url: str,
    source: str,
    scheme: str,
    nodes: list[tuple[str, int]] | tuple[tuple[str, int], ...],
    username: str | None,
    password: str | None,
    dbs: set[int],
    params: dict[str, str],
    service: str | None,
) -> RedisURL:
    named = params.get("master_name") or params.get("service_name")
    if service and named and service != named:
        raise ConfigError(
            f"redis URL from {source}: service name {service!r} in the path and {named!r} "
            "in the parameters disagree"
        )
    return RedisURL(
        url=url,
        source=source,
        scheme=scheme,
        host=nodes[0][0],
        port=nodes[0][1],
        db=dbs.pop() if dbs else 0,
        username=username,
        password=password,
        path=None,
        tls_verify=None,
        mode="sentinel",
        nodes=tuple(nodes),
        service_name=service or named or None,
        sentinel_username=params.get("sentinel_username") or None,
        sentinel_password=params.get("sentinel_password") or None,
    )
