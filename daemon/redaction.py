"""One place that decides what of a secret may be shown: URLs, free text, registered literals.

Pure functions and one process-wide registry of literal secrets; no logging, no I/O, no
third-party imports, so the readers and the legacy client can use it too.

What a caller may rely on:

- :func:`redact_url` masks the userinfo of every ``scheme://`` URL in `text` and the values of
  secret-looking query parameters. The userinfo is found by *position*, the way a URL parser
  finds it: the authority runs from ``//`` to the first ``/``, ``?`` or ``#`` (or whitespace,
  in free text), and the userinfo is everything before the *last* ``@`` in it. So a password
  with ``@``, ``:``, ``%`` or ``;`` in it is masked whole, encoded or not. The username (the
  part before the first ``:``) stays visible.
- :func:`redact_endpoint` is the form for an upstream (HTTP) URL: userinfo and fragment
  dropped, secret query values masked.
- :func:`scheme_only` is what to show of a URL that did not parse: its scheme and nothing else
  (the parser's idea of where the password ends cannot be trusted then).
- :func:`scrub_text` masks every literal registered with :func:`register_secret` (longest
  first), then applies :func:`redact_url`. Logs, error lines, status output and tracebacks all
  go through it.
- :func:`is_secret_param` is the one list of query parameter names whose values are secrets.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

__all__ = [
    "MASK",
    "authority",
    "candidate_secrets",
    "clear_secrets",
    "is_secret_param",
    "redact_endpoint",
    "redact_url",
    "register_secret",
    "registered_secrets",
    "scheme_only",
    "scrub_text",
    "secret_forms",
    "url_parts",
    "written_password",
]

MASK = "***"

# Literal secrets shorter than this are not registered: they would mask ordinary words.
MIN_SECRET_LENGTH = 4

# Parameter names that are secrets wherever they appear (Redis URLs, Binance URLs, brokers).
_SECRET_NAMES = frozenset(
    {"password", "pass", "token", "auth", "secret", "access_token", "sentinel_password", "key"}
)
# ... and names that merely contain one of these words (apiKey, signature, x_auth_token).
_SECRET_WORDS = re.compile(r"api_?key|access_?key|secret|token|sig|pass|auth|cred", re.IGNORECASE)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# A query parameter in free text: the separator, the name, the value up to the next separator.
_QUERY_PARAM = re.compile(r"(?P<key>[?&;](?P<name>[A-Za-z0-9_.\-]+))=(?P<value>[^&;#\s'\"]*)")
# Where an authority ends: in a URL at the path, query or fragment. In free text a URL may be
# one that failed to parse (a raw '/' in its password), so the userinfo there runs to the last
# '@' before whitespace or a quote: masking a path with an '@' in it is the lesser harm.
_AUTHORITY_END_URL = frozenset("/?#")
_AUTHORITY_END_TEXT = frozenset("'\"<>`") | frozenset(" \t\r\n\v\f")

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def is_secret_param(name: str) -> bool:
    """Whether a query parameter called `name` carries a secret value."""
    low = name.lower()
    if low in ("ssl_keyfile", "ssl_certfile", "ssl_ca_certs"):
        return False  # file paths, not secrets
    return low in _SECRET_NAMES or bool(_SECRET_WORDS.search(low))


def _authority_end(text: str, start: int, stops: frozenset[str]) -> int:
    for index in range(start, len(text)):
        if text[index] in stops:
            return index
    return len(text)


def authority(url: str) -> tuple[int, int]:
    """(start, end) of the authority of the URL at the start of `url`, as a URL parser splits
    it: after ``scheme://`` up to the first ``/``, ``?`` or ``#``; (-1, -1) without a scheme."""
    match = _SCHEME.match(url.strip())
    if not match:
        return -1, -1
    offset = len(url) - len(url.lstrip())
    begin = offset + match.end()
    return begin, _authority_end(url, begin, _AUTHORITY_END_URL)


_NEXT_URL = re.compile(r";(?=\s*[A-Za-z][A-Za-z0-9+.\-]*://)")


def url_parts(text: str) -> list[str]:
    """The URLs of a ``;``-joined list (Celery's ``sentinel://h1;sentinel://h2``): split only
    where a scheme follows the ``;``, so a ``;`` inside a password stays in its URL."""
    return _NEXT_URL.split(text)


def written_password(url: str) -> str | None:
    """The password of the URL at the start of `url` exactly as written (not decoded): the
    userinfo up to the last ``@`` of the authority, after its first ``:`` if it has one."""
    begin, end = authority(url)
    if begin < 0:
        return None
    at = url.rfind("@", begin, end)
    if at < 0:
        return None
    user, colon, password = url[begin:at].partition(":")
    return (password if colon else user) or None


def _mask_userinfo(userinfo: str) -> str:
    if not userinfo:
        return ""
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{MASK}@" if colon else f"{MASK}@"


def _redact_authorities(text: str, stops: frozenset[str], *, drop: bool) -> str:
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        if match.start() < pos:
            continue  # inside an authority already handled
        begin = match.end()
        end = _authority_end(text, begin, stops)
        at = text.rfind("@", begin, end)
        out.append(text[pos:begin])
        if at < 0:
            pos = begin
            continue
        userinfo = text[begin:at]
        if userinfo:
            out.append("" if drop else _mask_userinfo(userinfo))
        else:
            out.append("@" if not drop else "")
        pos = at + 1
    out.append(text[pos:])
    return "".join(out)


def _redact_params(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        if is_secret_param(match.group("name")) and match.group("value"):
            return f"{match.group('key')}={MASK}"
        return match.group(0)

    return _QUERY_PARAM.sub(repl, text)


def redact_url(text: str) -> str:
    """Mask credentials in every URL inside `text` (userinfo and secret query values)."""
    return _redact_params(_redact_authorities(text, _AUTHORITY_END_TEXT, drop=False))


def redact_one_url(url: str) -> str:
    """Like :func:`redact_url` for a string that is one URL (or ``;``-joined URLs): the
    authority ends only where a URL parser ends it, so whitespace in a password is masked too."""
    return _redact_params(_redact_authorities(url, _AUTHORITY_END_URL, drop=False))


def redact_endpoint(url: str) -> str:
    """An upstream URL for messages: no userinfo, no fragment, secret query values masked."""
    text = _redact_authorities(url.strip(), _AUTHORITY_END_URL, drop=True)
    text = text.partition("#")[0]
    return _redact_params(text)


def scheme_only(url: str) -> str:
    """What may be shown of a URL that failed to parse: ``scheme://…`` or ``(no scheme)``."""
    match = _SCHEME.match(url.strip())
    return f"{match.group(0)}…" if match else "(no scheme)"


def secret_forms(
    decoded: Iterable[str | None], written: Iterable[str | None] = ()
) -> tuple[str, ...]:
    """The literals to register for some secrets: each `decoded` one as is and percent-encoded,
    each `written` one (as it appears in a URL) as is; ones too short to mask safely dropped."""
    found: set[str] = set()
    for value in decoded:
        if value:
            found.update({value, quote(value, safe="")})
    found.update(value for value in written if value)
    return tuple(sorted(s for s in found if len(s) >= MIN_SECRET_LENGTH))


def candidate_secrets(text: str) -> tuple[str, ...]:
    """Whatever in `text` (a URL that may not parse) could be a password, to register before
    parsing: for each ``scheme://``, the userinfo up to the last ``@`` before the next URL, and
    its part after the first ``:``. Over-registering only masks more."""
    found: list[str] = []
    starts = [m.end() for m in _SCHEME.finditer(text)]
    for index, begin in enumerate(starts):
        stop = starts[index + 1] if index + 1 < len(starts) else len(text)
        at = text.rfind("@", begin, stop)
        if at > begin:
            userinfo = text[begin:at]
            found += [userinfo, userinfo.partition(":")[2]]
    return secret_forms((), found)


def register_secret(*values: str) -> None:
    """Mask these exact strings in everything :func:`scrub_text` sees from now on."""
    global _secrets
    with _lock:
        merged = set(_secrets) | {v for v in values if v}
        # Longest first, so a secret that contains another is masked whole.
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def registered_secrets() -> tuple[str, ...]:
    return _secrets


def clear_secrets() -> None:
    """Forget every registered secret (tests; a reload with new credentials keeps the old)."""
    global _secrets
    with _lock:
        _secrets = ()


def scrub_text(text: str) -> str:
    """Mask registered secrets, then URL credentials, in `text`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return redact_url(text)
