"""What a command line asks for, read without importing Faust.

The ``streamlake`` entry (:mod:`streamlake.entry`) decides from these whether
a worker runs under its watchdog before anything imports Faust's CLI, which
takes about a second and 30 MB that a watchdog never uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ..config import Settings, load_settings, with_overrides

__all__ = ["APP_COMMANDS", "command_of", "needs_app", "settings_overrides", "settings_from", "refuse"]

#: Faust's commands that work on the app itself (the others never need it built).
APP_COMMANDS = ("worker", "agents", "tables", "send", "reset", "livecheck", "model", "models", "clean-versions")

# Root and worker options that take a value, so the command name can be found in argv.
_VALUE_OPTIONS = {"-A", "--app", "-W", "--workdir", "-D", "--datadir", "-L", "--loop", "-f", "--logfile",
                  "-l", "--loglevel", "--blocking-timeout", "--console-port"}
_SETTING_OPTIONS = {"--datadir": "datadir", "-D": "datadir", "--web-port": "web_port", "-p": "web_port",
                    "--web-host": "web_host", "-h": "web_host"}


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


def settings_from(argv: Sequence[str]) -> Settings:
    """The settings from conf/ and the environment, with the Faust options in *argv* winning over both."""
    settings = load_settings()
    overrides = settings_overrides(argv)
    return with_overrides(settings, **overrides) if overrides else settings


def refuse(exc: Exception) -> NoReturn:
    """End the process for a bad setting or option: one ``error:`` line and exit status 2, no traceback."""
    click.echo(f"error: {exc}", err=True)
    raise SystemExit(2)
