"""``streamlake broker start|stop|status|kill|restart``: the embedded local broker or a local cluster."""

from __future__ import annotations

import time
from typing import Any

import click

from .. import broker as local
from ..broker import cluster
from ..config import load_settings
from .output import emit, friendly_errors, json_option


def _defaults() -> tuple[int, str, str]:
    settings = load_settings()
    return settings.local_broker_port, settings.local_broker_data_dir, settings.kafka_version


@click.group()
def broker() -> None:
    """Run a local Kafka broker (the embedded default) or a local multi-node cluster."""


@broker.command()
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Listener port on 127.0.0.1 (0 picks free ones; with --nodes N, nodes use PORT..PORT+N-1).")
@click.option("--nodes", type=click.IntRange(1, 9), default=1, show_default=True,
              help="How many nodes; more than 1 starts a KRaft cluster (every node broker and controller).")
@click.option("--data-dir", default=None, help="Where logs, storage and the pid file(s) live.")
@click.option("--kafka-version", default=None, help="Apache Kafka 4.x version to run.")
@friendly_errors
def start(port: int | None, nodes: int, data_dir: str | None, kafka_version: str | None) -> None:
    """Resolve the jars (cached), format storage once, start and wait until ready."""
    d_port, d_dir, d_version = _defaults()
    began = time.monotonic()
    if nodes > 1:
        state = cluster.start_cluster(nodes, data_dir or d_dir, port=d_port if port is None else port,
                                      kafka_version=kafka_version or d_version)
        click.echo(f"cluster of {nodes} nodes ready in {time.monotonic() - began:.1f}s "
                   f"(pids {', '.join(str(n.pid) for n in state.nodes)}, Kafka {state.kafka_version})")
        click.echo(state.url)
        return
    single = local.start_broker(
        port=d_port if port is None else port,
        data_dir=data_dir or d_dir,
        kafka_version=kafka_version or d_version,
    )
    click.echo(f"broker ready in {time.monotonic() - began:.1f}s (pid {single.pid}, Kafka {single.kafka_version})")
    click.echo(single.url)


@broker.command()
@click.option("--data-dir", default=None, help="The data dir given to start.")
@friendly_errors
def stop(data_dir: str | None) -> None:
    """Stop the broker (or every node of the cluster) started from --data-dir."""
    data_dir = data_dir or _defaults()[1]
    if cluster.is_cluster(data_dir):
        stopped = cluster.stop_cluster(data_dir)
        click.echo(f"stopped {len(stopped.nodes)} nodes" if stopped else "no cluster was running")
        return
    state = local.stop_broker(data_dir)
    click.echo(f"stopped broker pid {state.pid}" if state else "no broker was running")


def _render_status(info: dict[str, Any]) -> str:
    if "nodes" not in info:
        return (f"running: {info['bootstrap']} (pid {info['pid']}, Kafka {info['kafka_version']}, "
                f"log {info['log_file']})" if info["running"] else f"not running (data dir {info['data_dir']})")
    lines = [f"cluster {info['cluster_id']}: {info['nodes_running']} of {len(info['nodes'])} nodes running "
             f"(Kafka {info['kafka_version']}{', SASL_SSL' if info['secured'] else ''})"]
    lines += [f"  node {n['node_id']}: {'running' if n['running'] else 'DOWN'} {n['bootstrap']} "
              f"(controller {n['controller']}, pid {n['pid']}, log {n['log_file']})" for n in info["nodes"]]
    return "\n".join(lines)


@broker.command()
@click.option("--data-dir", default=None, help="The data dir given to start.")
@json_option
@friendly_errors
def status(data_dir: str | None, as_json: bool) -> None:
    """Say whether the local broker (or each cluster node) runs, and where; exit 1 if none does."""
    data_dir = data_dir or _defaults()[1]
    info = cluster.cluster_status(data_dir) if cluster.is_cluster(data_dir) else local.broker_status(data_dir)
    emit(info, as_json, _render_status)
    if not info["running"]:
        raise SystemExit(1)


@broker.command()
@click.argument("node", type=click.IntRange(1))
@click.option("--data-dir", default=None, help="The data dir given to start.")
@friendly_errors
def kill(node: int, data_dir: str | None) -> None:
    """SIGKILL cluster node NODE, as a crash would (for tests and demos)."""
    killed = cluster.kill_node(data_dir or _defaults()[1], node)
    click.echo(f"killed node {killed.node_id} (pid {killed.pid}, {killed.bootstrap})")


@broker.command()
@click.argument("node", type=click.IntRange(1))
@click.option("--data-dir", default=None, help="The data dir given to start.")
@friendly_errors
def restart(node: int, data_dir: str | None) -> None:
    """Stop cluster node NODE cleanly if it runs, and start it again on its ports and data."""
    began = time.monotonic()
    restarted = cluster.restart_node(data_dir or _defaults()[1], node)
    click.echo(f"node {restarted.node_id} ready in {time.monotonic() - began:.1f}s (pid {restarted.pid}, "
               f"{restarted.bootstrap})")
