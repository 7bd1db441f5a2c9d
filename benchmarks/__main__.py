"""Run the benchmarks: ``python -m benchmarks [NAME ...] [OPTIONS]``.

With no NAME, every ``benchmarks/bench_*.py`` module runs, in name order. A NAME is a module's
name without the ``bench_`` prefix (``refresh`` runs ``bench_refresh``). Everything after the
names (``--runs 15``...) is left in ``sys.argv`` for each module's ``main()`` to parse.

Exit status: 0 when every benchmark ran (missed targets are reported, not failures), 2 for an
unknown name, otherwise the first non-zero status a benchmark returned (1 if one raised).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmark modules in this package, sorted (``refresh`` for bench_refresh)."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name.removeprefix(PREFIX)
        for info in pkgutil.iter_modules([here])
        if info.name.startswith(PREFIX) and not info.ispkg
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    known = available()
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        print(__doc__)
        print("available:", ", ".join(known) or "(none)")
        return 0

    names: list[str] = []
    while args and not args[0].startswith("-"):
        names.append(args.pop(0).removeprefix(PREFIX))
    unknown = [n for n in names if n not in known]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    selected = names or known

    status = 0
    for name in selected:
        # Each module parses its own options from sys.argv, as if run on its own.
        sys.argv = [f"benchmarks {name}", *args]
        print(f"=== {name} ===", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
            code = int(module.main())
        except SystemExit as exc:  # argparse errors and explicit exits
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            traceback.print_exc()
            code = 1
        if code != 0:
            print(f"=== {name}: exit status {code} ===", file=sys.stderr, flush=True)
            status = status or code
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
