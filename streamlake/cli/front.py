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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from faust.cli.faust import cli as faust_cli

__all__ = ["STREAMLAKE_HELP", "install_front_door", "allow_any_free_web_port", "command_of", "settings_overrides",
           "needs_app"]

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
#: Faust's commands that work on the app itself (the others never need it built).
APP_COMMANDS = ("worker", "agents", "tables", "send", "reset", "livecheck", "model", "models", "clean-versions")

# Root and worker options that take a value, so the command name can be found in argv.
_VALUE_OPTIONS = {"-A", "--app", "-W", "--workdir", "-D", "--datadir", "-L", "--loop", "-f", "--logfile",
                  "-l", "--loglevel", "--blocking-timeout", "--console-port"}
_SETTING_OPTIONS = {"--datadir": "datadir", "-D": "datadir", "--web-port": "web_port", "-p": "web_port",
                    "--web-host": "web_host", "-h": "web_host"}


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


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in *argv* (skipping root options and their values), or None."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def needs_app(argv: Sequence[str]) -> bool:
    """Whether running *argv* needs the app built (a Faust app command, not asking for help)."""
    return command_of(argv) in APP_COMMANDS and not ({"--help"} & set(argv))


def settings_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """Settings that Faust options in *argv* set: ``--datadir`` anywhere, web options after ``worker``."""
    overrides: dict[str, Any] = {}
    command = command_of(argv)
    seen_command = False
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == command:
            seen_command = True
        name, _, inline = arg.partition("=")
        field = _SETTING_OPTIONS.get(name)
        if field is None or (field != "datadir" and not seen_command) or (field == "datadir" and seen_command):
            continue
        value = inline if inline else (args[i + 1] if i + 1 < len(args) else None)
        if value is None:
            raise click.UsageError(f"{name} needs a value")
        if field == "web_port":
            try:
                overrides[field] = int(value)
            except ValueError:
                raise click.UsageError(f"{name} {value!r} is not a port number") from None
        else:
            overrides[field] = value
    return overrides
