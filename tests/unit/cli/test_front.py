"""StreamLake's front door: the command in argv, worker options as settings, the data dir lock."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from faust.cli.faust import cli as faust_cli

from streamlake.cli.argv import command_of, needs_app, settings_overrides
from streamlake.cli.front import allow_any_free_web_port
from streamlake.errors import ConfigError
from streamlake.runtime.startup import lock_datadir


@pytest.mark.parametrize(("argv", "command"), [
    (["worker", "-l", "info"], "worker"),
    (["-A", "streamlake.app", "--datadir", "/x", "worker"], "worker"),
    (["--datadir=/x", "topics", "list"], "topics"),
    (["-l", "info"], None),
])
def test_the_command_is_found_past_root_options_and_their_values(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_only_fausts_app_commands_build_the_app() -> None:
    assert needs_app(["worker", "-l", "info"])
    assert not needs_app(["worker", "--help"])
    assert not needs_app(["topics", "list"]) and not needs_app(["--help"]) and not needs_app([])


def test_worker_options_become_settings_that_win_over_env_and_conf() -> None:
    argv = ["--datadir", "/data/a", "worker", "-l", "info", "--web-port", "7001", "--web-host=0.0.0.0"]
    assert settings_overrides(argv) == {"datadir": "/data/a", "web_port": 7001, "web_host": "0.0.0.0"}
    assert settings_overrides(["-D", "/data/b", "worker"]) == {"datadir": "/data/b"}
    with pytest.raises(click.UsageError, match="--web-port 'x' is not a port number"):
        settings_overrides(["worker", "--web-port", "x"])


def test_worker_web_port_zero_passes_faust_option_as_not_given_and_reaches_the_settings() -> None:
    allow_any_free_web_port()
    allow_any_free_web_port()  # idempotent
    command = faust_cli.commands["worker"]
    ctx = command.make_context("worker", ["--web-port", "0"])
    assert ctx.params["web_port"] is None  # Faust's conf refuses 0: it must not see it
    assert command.make_context("worker", ["-p", "7001"]).params["web_port"] == 7001
    with pytest.raises(click.BadParameter):
        command.make_context("worker", ["--web-port", "70000"])
    assert settings_overrides(["worker", "--web-port", "0"]) == {"web_port": 0}


def test_a_second_worker_on_the_same_data_dir_is_refused_with_the_dir_named(tmp_path: Path) -> None:
    held = lock_datadir(tmp_path / "data")
    try:
        with pytest.raises(ConfigError, match=f"the data dir {tmp_path / 'data'} is in use by another worker "
                                              rf"\(pid {os.getpid()}\).*--datadir"):
            lock_datadir(tmp_path / "data")
        lock_datadir(tmp_path / "other").close()  # another dir is free
    finally:
        held.close()
    lock_datadir(tmp_path / "data").close()  # free again once the holder is gone
