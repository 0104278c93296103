"""StreamLake's front door on Faust's CLI: its own help, its commands first, worker options honoured.

``streamlake`` and ``faust -A streamlake.app`` share Faust's root command
group. This module gives it StreamLake's description, lists ``worker`` and
StreamLake's groups first, hides Faust's commands that have nothing to do
with StreamLake, and reads the Faust options StreamLake also sets, so that
they win over the environment and the conf file (precedence: command-line
option, environment, conf file, default):

* ``--datadir``/``-D`` - the worker's data dir (Faust only reads it before
  the app exists, so StreamLake passes it on when it builds the app);
* ``--web-port``/``-p``, ``--web-host``/``-h``, ``--web-bind``/``-b`` - the
  worker's web server (StreamLake's settings, and Faust applies them too;
  ``--web-port 0``, which Faust's option refuses, binds any free port:
  :func:`allow_any_free_web_port`);
* ``--loglevel``/``-l`` - applied by Faust's worker itself.

Reading those options from a command line is :mod:`streamlake.cli.argv`'s job.
"""

from __future__ import annotations

from typing import Any

import click
from faust.cli.faust import cli as faust_cli

__all__ = ["STREAMLAKE_HELP", "install_front_door", "allow_any_free_web_port"]

STREAMLAKE_HELP = """StreamLake: Kafka ingestion topologies on Faust.

Run a worker with `streamlake worker -l info`; look after topics, DLQs,
offsets and the group with the commands below. Settings come from
conf/<STREAMLAKE_ENV>.toml and STREAMLAKE_* environment variables; the
options below win over both.
"""

#: Listed first, in this order; Faust's remaining commands follow.
FIRST_COMMANDS = ("worker", "status", "topics", "dlq", "replay", "produce", "produce-sample", "console", "demo",
                  "broker")
#: Faust's commands about its own models and livecheck: not StreamLake's concern.
HIDDEN_FAUST_COMMANDS = ("livecheck", "model", "models", "clean-versions")


def _ordered_commands(self: click.Group, ctx: click.Context) -> list[str]:
    rest = sorted(name for name in self.commands if name not in FIRST_COMMANDS)
    return [name for name in FIRST_COMMANDS if name in self.commands] + rest


def install_front_door() -> None:
    """Give Faust's root group StreamLake's help, order and hidden commands (idempotent)."""
    faust_cli.help = STREAMLAKE_HELP
    faust_cli.list_commands = _ordered_commands.__get__(faust_cli)  # type: ignore[method-assign]
    for name in HIDDEN_FAUST_COMMANDS:
        command = faust_cli.commands.get(name)
        if command is not None:
            command.hidden = True


class WorkerWebPort(click.IntRange):
    """``worker --web-port``: a port, or 0 for any free one.

    Faust's conf refuses port 0, so 0 reaches Faust as "not given"; StreamLake's settings
    carry it (:func:`settings_overrides`) and its web driver binds any free port.
    """

    name = "port"

    def __init__(self) -> None:
        super().__init__(0, 65535)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(value, param, ctx) or None


def allow_any_free_web_port() -> None:
    """Let ``worker --web-port 0`` through Faust's option (idempotent)."""
    worker = faust_cli.commands.get("worker")
    for param in worker.params if worker is not None else ():
        if param.name == "web_port" and isinstance(param, click.Option):
            param.type = WorkerWebPort()
            param.help = ("Port of the web server; 0: any free port, logged once it listens "
                          "(default: [app] web_port)")
