"""The ``symbold`` command line (console script ``symbold = daemon.cli:main``).

:mod:`daemon.cli.main` parses flags, loads the configuration once and hands it to one command;
each command lives in :mod:`daemon.cli.commands` and imports what it needs when it runs, so
``symbold --help`` and the light commands start fast.
"""

from daemon.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
