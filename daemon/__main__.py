"""``python -m daemon`` runs the ``symbold`` command."""

from daemon.cli import main

raise SystemExit(main())
