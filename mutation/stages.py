"""Run test commands one after the other until one fails: cosmic-ray's test command.

``python -m mutation.stages '<json list of argument lists>'`` exits with the status of the
first command that does not pass, or 0 when all pass. A module's cheap unit tests come
first, in a process of their own, so a mutant they kill never pays for starting the
conformance tests' servers or collecting their thousands of cases. The commands run in
this process's group, so cosmic-ray's timeout (which kills the whole group) stops them too.

With ``MUTATION_FORKSERVER`` set to the socket of a :mod:`mutation.forkserver`, each
``python -m pytest ...`` command runs in a child forked from that warm server instead (a
run whose client is killed is killed too); without it, or when it cannot be reached, as a
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence

from .forkserver import request

SOCKET_VARIABLE = "MUTATION_FORKSERVER"


def _run(command: list[str]) -> int:
    server = os.environ.get(SOCKET_VARIABLE)
    if server and command[1:3] == ["-m", "pytest"]:
        status = request(server, command[3:])
        if status is not None:
            return status
    # Arguments written by the runner from mutation/cosmic-ray.toml, no shell.
    return subprocess.run(command, check=False).returncode  # noqa: S603


def main(argv: Sequence[str] | None = None) -> int:
    """Run each command of the JSON list ``argv[0]``; the first failing status, else 0."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python -m mutation.stages '[[\"cmd\", ...], ...]'", file=sys.stderr)
        return 4
    commands = json.loads(args[0])
    if not isinstance(commands, list) or not all(
        isinstance(c, list) and c and all(isinstance(a, str) for a in c) for c in commands
    ):
        print("mutation.stages: expected a JSON list of argument lists", file=sys.stderr)
        return 4
    for command in commands:
        status = _run(command)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
