"""The ``streamlake`` command's entry: a watched worker's watchdog starts here, before Faust is imported.

A watchdog only waits for its worker and, if the worker is killed, sends one
LeaveGroup (:mod:`streamlake.runtime.watchdog`). Deciding that from the
command line and the settings alone keeps Faust's CLI out of it: importing
that first cost every watched worker about a second before it was even
spawned, and the watchdog 30 MB it never used. Everything else goes on to
:func:`streamlake.app.main`.
"""

from __future__ import annotations

import os
import sys

import click

from .cli.argv import command_of, needs_app, refuse, settings_from
from .errors import StreamLakeError
from .runtime.watchdog import WATCHED_ENV, run_watched

__all__ = ["main"]


def main() -> None:
    """Console script ``streamlake`` (and ``python -m streamlake``)."""
    argv = sys.argv[1:]
    if command_of(argv) == "worker" and needs_app(argv) and WATCHED_ENV not in os.environ:
        try:
            settings = settings_from(argv)
        except (StreamLakeError, click.UsageError) as exc:
            refuse(exc)
        if settings.worker_watchdog:
            sys.exit(run_watched(argv, settings))
    from .app import main as run_app

    run_app()
