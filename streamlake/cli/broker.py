"""``streamlake broker start|stop|status``: the embedded local broker."""

from __future__ import annotations

import time

import click

from .. import broker as local
from ..config import load_settings
from .output import emit, friendly_errors, json_option


def _defaults() -> tuple[int, str, str]:
    settings = load_settings()
    return settings.local_broker_port, settings.local_broker_data_dir, settings.kafka_version


@click.group()
def broker() -> None:
    """Run a local single-node Kafka broker (the embedded default)."""


@broker.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Listener port on 127.0.0.1 (0 picks a free one).")
@click.option("--data-dir", default=None, help="Where logs, storage and the pid file live.")
@click.option("--kafka-version", default=None, help="Apache Kafka 4.x version to run.")
@friendly_errors
def start(port: int | None, data_dir: str | None, kafka_version: str | None) -> None:
    """Resolve the jars (cached), format storage once, start and wait until ready."""
    d_port, d_dir, d_version = _defaults()
    began = time.monotonic()
    state = local.start_broker(
        port=d_port if port is None else port,
        data_dir=data_dir or d_dir,
        kafka_version=kafka_version or d_version,
    )
    click.echo(f"broker ready in {time.monotonic() - began:.1f}s (pid {state.pid}, Kafka {state.kafka_version})")
    click.echo(state.url)


@broker.command()
@click.option("--data-dir", default=None, help="The data dir given to start.")
@friendly_errors
def stop(data_dir: str | None) -> None:
    """Stop the broker started from --data-dir."""
    state = local.stop_broker(data_dir or _defaults()[1])
    click.echo(f"stopped broker pid {state.pid}" if state else "no broker was running")


@broker.command()
@click.option("--data-dir", default=None, help="The data dir given to start.")
@json_option
@friendly_errors
def status(data_dir: str | None, as_json: bool) -> None:
    """Say whether the local broker runs, and where."""
    info = local.broker_status(data_dir or _defaults()[1])
    emit(info, as_json, lambda i: (
        f"running: {i['bootstrap']} (pid {i['pid']}, Kafka {i['kafka_version']}, log {i['log_file']})"
        if i["running"] else f"not running (data dir {i['data_dir']})"
    ))
    if not info["running"]:
        raise SystemExit(1)
