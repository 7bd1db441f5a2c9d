"""Which Redis URL to use, in what spelling, and how to show it without its secrets.

Pure functions: no I/O, no logging. The resolution order is the legacy one with an explicit
setting in front: settings (file, ``SYMBOLD_REDIS_URL`` or ``--redis-url``) > ``REDIS_URL`` >
``CELERY_BROKER_URL`` > ``redis://localhost:6379/0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from daemon.settings import DEFAULT_REDIS_URL, ConfigError

SUPPORTED_SCHEMES = ("redis", "rediss", "unix")

# Celery/kombu spell TLS verification the way the ssl module does; redis-py wants the short words.
_CELERY_CERT_REQS = {
    "CERT_REQUIRED": "required",
    "CERT_OPTIONAL": "optional",
    "CERT_NONE": "none",
}

# Query parameters whose values are secrets wherever they appear.
_SECRET_PARAMS = frozenset({"password", "pass", "token", "auth", "secret", "access_token"})

_MASK = "***"


@dataclass(frozen=True, slots=True)
class RedisURL:
    """A validated Redis URL and where it came from.

    `url` holds the secret and must never be logged: use `redacted` or `describe()`.
    """

    url: str
    source: str
    scheme: str
    host: str
    port: int | None
    db: int
    username: str | None
    password: str | None
    path: str | None
    tls_verify: str | None

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    def describe(self) -> dict[str, object]:
        """Fields that are safe to log: never the password."""
        out: dict[str, object] = {"scheme": self.scheme, "source": self.source, "db": self.db}
        if self.scheme == "unix":
            out["path"] = self.path
        else:
            out["host"] = self.host
            out["port"] = self.port
        if self.username:
            out["username"] = self.username
        out["password"] = "set" if self.password else "none"
        if self.tls_verify is not None:
            out["tls_verify"] = self.tls_verify
        return out

    def secrets(self) -> tuple[str, ...]:
        """Literal secret strings (raw and URL-encoded) that a log scrubber should mask."""
        found: set[str] = set()
        if self.password:
            found.update({self.password, quote(self.password, safe="")})
        for key, value in parse_qsl(urlsplit(self.url).query, keep_blank_values=True):
            if key.lower() in _SECRET_PARAMS and value:
                found.update({value, quote(value, safe="")})
        # Very short "secrets" would mask ordinary words in every log line.
        return tuple(sorted(s for s in found if len(s) >= 4))


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


def parse_redis_url(url: str, source: str) -> RedisURL:
    """Validate `url` and rewrite Celery's TLS spelling into redis-py's."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ConfigError(
            f"redis URL from {source} is malformed ({_scrub_reason(str(err))}): {redact_url(url)}"
        ) from None
    scheme = parts.scheme.lower()
    if scheme in ("sentinel", "redis+sentinel", "sentinels"):
        raise ConfigError(
            f"redis URL from {source} uses {scheme}://, which symbold does not support yet; "
            "point it at the primary with redis://, rediss:// or unix://"
        )
    if scheme not in SUPPORTED_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ConfigError(
            f"redis URL from {source} has {shown}; expected one of "
            + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
        )

    query = parse_qsl(parts.query, keep_blank_values=True)
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
    if scheme == "rediss" and tls_verify is None:
        tls_verify = "required"

    db = 0
    db_text = dict(query).get("db")
    if scheme != "unix" and parts.path not in ("", "/"):
        db_text = parts.path.lstrip("/")
    if db_text is not None:
        try:
            db = int(db_text)
        except ValueError:
            raise ConfigError(
                f"redis URL from {source}: database {db_text!r} is not a number"
            ) from None
        if db < 0:
            raise ConfigError(f"redis URL from {source}: database {db} is negative")

    host = parts.hostname or ""
    if scheme != "unix" and not host:
        raise ConfigError(f"redis URL from {source} names no host: {redact_url(url)}")
    if scheme == "unix" and not parts.path:
        raise ConfigError(f"redis URL from {source} names no socket path")

    normalized = urlunsplit(
        (scheme, parts.netloc, parts.path, urlencode(rewritten, safe="/:"), parts.fragment)
    )
    return RedisURL(
        url=normalized,
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


# scheme://user:password@  or  scheme://password@ (Celery writes redis://:pw@ but also redis://pw@
# is seen); anything between "//" and "@" is treated as credentials.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@]*)@")
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:" + "|".join(sorted(_SECRET_PARAMS)) + r"))=(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)


def _mask_userinfo(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{match.group('scheme')}{user}:{_MASK}@"
    if not userinfo:
        return match.group(0)
    return f"{match.group('scheme')}{_MASK}@"


def redact_url(text: str) -> str:
    """Mask credentials in every URL inside `text` (userinfo passwords and secret parameters).

    Works on free text too, so it doubles as the log scrubber's backstop.
    """
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('key')}={_MASK}", text)


def _scrub_reason(reason: str) -> str:
    return redact_url(reason)
