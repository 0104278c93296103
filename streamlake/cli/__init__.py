"""StreamLake's commands, added to Faust's own CLI.

``streamlake <cmd>`` and ``faust -A streamlake.app <cmd>`` are the same thing:
importing :mod:`streamlake.app` registers these groups on Faust's root group (not for a worker,
which needs none of them).
One module per command group; each command parses options, calls one library
function and prints text or ``--json``.
"""

from __future__ import annotations

__all__ = ["register_commands"]


def register_commands() -> None:
    # Imported here, not with the package: a worker needs none of them (the console alone
    # pulls in pyiceberg), and importing them all cost every worker a second of start-up.
    # Faust too: a watchdog reads its command line through this package (.argv) without it.
    from faust.cli.faust import cli as faust_cli

    from .broker import broker
    from .console import console
    from .demo import demo
    from .dlq import dlq
    from .front import install_front_door
    from .lake import lake, land
    from .produce import produce_command, produce_sample_command
    from .replay import replay
    from .status import status
    from .topics import topics

    for command in (broker, topics, replay, dlq, status, demo, produce_command, produce_sample_command, console,
                    land, lake):
        if command.name not in faust_cli.commands:
            faust_cli.add_command(command)
    install_front_door()
