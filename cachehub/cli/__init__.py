"""The ``cachehub`` command: tour, admin, doctor, migrate, conformance, console, providers'.

The built-in commands are registered here, so that :mod:`.app` (which every command
module imports) imports none of them; providers add theirs through the
``cachehub_cli_commands`` hook (e.g. ``local-dynamodb``).
"""

from . import admin, bench, conformance, console, doctor, migrate, tour
from .app import cli, main

for _module in (tour, admin, doctor, migrate, conformance, bench, console):
    for _command in _module.COMMANDS:
        cli.add_command(_command)

__all__ = ["cli", "main"]
