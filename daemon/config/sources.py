"""Files the settings come from besides the TOML itself: which config file, and where the
Redis URL is read from when no setting holds it.

- The config file: ``--config PATH``, else ``$SYMBOLD_CONFIG``, else
  ``/etc/symbold/config.toml`` when it exists, else none. ``SYMBOLD_CONFIG`` lets an operator's
  shell or cron job use the service's file without repeating ``--config``.
- The Redis URL, when neither the file, ``SYMBOLD_REDIS_URL`` nor ``--redis-url`` sets
  ``[redis] url``: the systemd credential ``[redis] credential`` (inside the service, from
  ``$CREDENTIALS_DIRECTORY``), else the file ``[redis] url_file``. The unit's
  ``LoadCredential=redis_url:/etc/symbold/redis_url`` and ``url_file =
  "/etc/symbold/redis_url"`` name the same file, so the sandboxed service (which cannot read
  /etc/symbold/redis_url itself) and an operator's CLI find the same Redis.

The content of a URL file is never put into an error message: only the key and the path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.config.settings import DEFAULT_CONFIG_PATH, ConfigError

CONFIG_ENV = "SYMBOLD_CONFIG"


def config_file(
    given: Path | None, environ: Mapping[str, str], *, use_default_path: bool = True
) -> tuple[Path | None, str]:
    """The config file to read and what chose it (``"--config"``, ``"$SYMBOLD_CONFIG"``,
    ``"default"`` or ``"none"``). `use_default_path` False: only `given` counts."""
    if given is not None:
        return given, "--config"
    if not use_default_path:
        return None, "none"
    from_env = environ.get(CONFIG_ENV, "").strip()
    if from_env:
        return Path(from_env), f"${CONFIG_ENV}"
    if DEFAULT_CONFIG_PATH.is_file():
        return DEFAULT_CONFIG_PATH, "default"
    return None, "none"


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a ConfigError that names the file."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable (permission denied)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path}: invalid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None


def read_credential(environ: Mapping[str, str], name: str) -> str | None:
    """The URL systemd passed with ``LoadCredential=NAME:...``, or None outside such a unit."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"redis.credential: cannot read {path}: {_why(err)}") from None
    return text or None


def read_url_file(path_text: str, origin: str) -> str:
    """The Redis URL held in the file ``[redis] url_file`` names (first line, stripped).

    Raises ConfigError naming the key, where it was set and the path (exit 78) when the file
    is missing, unreadable, not UTF-8 or empty; never with the file's content.
    """
    path = Path(path_text)
    where = f"redis.url_file (in {origin})" if origin else "redis.url_file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read {path}: {_why(err)}") from None
    url = text.strip()
    if not url:
        raise ConfigError(f"{where}: {path} is empty")
    if "\n" in url:
        raise ConfigError(f"{where}: {path} holds more than one line; put only the URL in it")
    return url


def _why(err: Exception) -> str:
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return type(err).__name__
