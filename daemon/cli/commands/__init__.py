"""One module per subcommand: ``register(sub, common)`` adds its parser; the handler runs it.

Handlers take the :class:`~daemon.config.loader.Config` loaded once by
:func:`daemon.cli.main.main` and the parsed arguments, and return an exit code from
:mod:`daemon.exitcodes`. Heavy imports (aiohttp, the service) happen inside handlers.
"""
