"""Generate the sync twins of the library's asyncio modules (the approach httpcore uses).

Each pair in ``PAIRS`` has one hand-written asyncio source; its blocking twin is produced from
it by the token substitutions below, so the two cannot drift. A generated file starts with a
header saying so and must not be edited by hand.

    python scripts/unasync.py          # rewrite every generated file
    python scripts/unasync.py daemon/budget/_async.py   # only that pair
    python scripts/unasync.py --check  # exit 1 when a generated file is out of date (CI)

Lines that only one side needs carry a marker comment in the async source:

- ``# unasync: remove``: the line is left out of the sync file;
- ``# unasync: <text>``: the sync file gets ``<text>`` (indented like the source line)
  instead of the line.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (async source, generated sync file), relative to the project root.
PAIRS: tuple[tuple[str, str], ...] = (
    ("daemon/readers/_async.py", "daemon/readers/_sync.py"),
    ("daemon/budget/_async.py", "daemon/budget/_sync.py"),
)

# Applied in order, on every line; word-bounded so that names merely containing the
# token are left alone.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\baclose\b", "close"),
    (r"\bredis\.asyncio\.", "redis."),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bAwaitable\b", "Callable"),
    (r"\bAsyncExitStack\b", "ExitStack"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\basync_(\w+)", r"\1"),
    (r"(\w)_async\b", r"\1_sync"),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basynchronous\b", "blocking"),
    (r"\basyncio twin\b", "sync twin"),
)

_MARKER = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# unasync: (?P<what>.*)$")
_COMPILED = tuple((re.compile(pattern), repl) for pattern, repl in SUBSTITUTIONS)


def header(source: str) -> str:
    return (
        f"# Generated from {source} by scripts/unasync.py: do not edit by hand.\n"
        "# Change the asyncio source and run `python scripts/unasync.py`.\n"
    )


def unasync_line(line: str) -> str | None:
    """The sync form of one source line, or None when the line is left out."""
    marked = _MARKER.match(line)
    if marked is not None:
        what = marked["what"].strip()
        if what == "remove":
            return None
        return marked["indent"] + what
    for pattern, repl in _COMPILED:
        line = pattern.sub(repl, line)
    return line


def unasync_text(text: str, source: str) -> str:
    out = [header(source)]
    for line in text.splitlines():
        converted = unasync_line(line)
        if converted is not None:
            out.append(converted.rstrip() + "\n")
    return "".join(out)


def formatted(text: str, target: str) -> str:
    """``text`` as ``ruff format`` leaves it: dropping ``await`` shortens lines, and the
    generated file must pass the same format check as the hand-written ones."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        raise SystemExit("scripts/unasync.py needs ruff (pip install -e '.[dev]')")
    done = subprocess.run(  # noqa: S603 - our own tool on our own source
        [ruff, "format", "--stdin-filename", target, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("sources", nargs="*", help="only these async sources (default: all)")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for source, target in PAIRS:
        if args.sources and source not in args.sources:
            continue
        src = ROOT / source
        if not src.exists():
            continue
        expected = formatted(unasync_text(src.read_text(encoding="utf-8"), source), target)
        dst = ROOT / target
        current = dst.read_text(encoding="utf-8") if dst.exists() else None
        if current == expected:
            continue
        if args.check:
            stale.append(target)
        else:
            dst.write_text(expected, encoding="utf-8")
            print(f"wrote {target}")
    if stale:
        print(
            "out of date (run `python scripts/unasync.py`): " + ", ".join(stale),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
