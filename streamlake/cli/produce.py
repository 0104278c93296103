"""``streamlake produce-sample``: a realistic load for a stream (the demo's load generator)."""

from __future__ import annotations

import asyncio
import secrets

import click

from ..catalog import TopicRole, load_catalog
from ..config import load_settings
from ..errors import StreamLakeError
from ..kafka.sample_producer import produce_sample
from ..sample import SampleMix, SampleSummary, generate_sample
from ..topology import discover_streams
from .output import emit, friendly_errors, json_option, table

ratio = click.FloatRange(0.0, 1.0)


def render_summary(summary: SampleSummary, topic: str) -> str:
    """Produced records by kind and where each kind must end."""
    data = summary.as_dict()
    rows = [[kind, count] for kind, count in data["by_kind"].items()]
    exp = data["expected"]
    lines = [f"produced {data['produced']} record(s) to {topic}", table(rows, ["kind", "records"]), "",
             f"expected: forwarded {exp['forwarded']}, dropped {exp['dropped']}, dlq {exp['dlq']}"]
    lines += [f"  dlq {reason}: {n}" for reason, n in exp["dlq_by_reason"].items()]
    return "\n".join(lines)


@click.command("produce-sample")
@click.option("--stream", "stream_name", default="sales.orders", show_default=True,
              help="Logical stream name (<domain>.<dataset>) declared under topologies/.")
@click.option("--events", type=click.IntRange(0), required=True, help="How many records to produce.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Records per second (default: as fast as the broker takes them).")
@click.option("--bad-ratio", type=ratio, default=0.01, show_default=True, help="Share of malformed records.")
@click.option("--duplicate-ratio", type=ratio, default=0.01, show_default=True, help="Share of duplicates.")
@click.option("--gap-ratio", type=ratio, default=0.01, show_default=True, help="Share of records that skip numbers.")
@click.option("--late-ratio", type=ratio, default=0.005, show_default=True, help="Share of late records (fill a gap).")
@click.option("--keys", type=click.IntRange(1), default=1000, show_default=True, help="Number of distinct keys.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed and key prefix: same records).")
@click.option("--key-prefix", default=None, help="Key prefix (default: 'ord-' and a random tag, so runs never collide).")
@json_option
@friendly_errors
def produce_sample_command(stream_name: str, events: int, rate: float | None, bad_ratio: float,
                           duplicate_ratio: float, gap_ratio: float, late_ratio: float, keys: int, seed: int,
                           key_prefix: str | None, as_json: bool) -> None:
    """Produce a realistic sample stream: many keys, increasing sequences, a few anomalies and bad records."""
    settings = load_settings()
    streams = {s.name: s for s in discover_streams(settings.topologies_dir)}
    stream = streams.get(stream_name)
    if stream is None:
        raise StreamLakeError(f"no stream {stream_name!r} under {settings.topologies_dir}; "
                              f"declared: {', '.join(sorted(streams)) or 'none'}")
    partitions = load_catalog(settings, streams.values()).for_stream(stream.name, TopicRole.SOURCE).partitions
    topic = str(stream.source_topic(settings.topic_prefix))
    mix = SampleMix(bad=bad_ratio, duplicate=duplicate_ratio, gap=gap_ratio, late=late_ratio)
    prefix = key_prefix or f"ord-{secrets.token_hex(3)}"
    records = generate_sample(events, keys, mix, seed, key_prefix=prefix, misroute=partitions > 1)
    summary = asyncio.run(produce_sample(settings, topic, partitions, records, rate, stream.policies))
    data = {"stream": stream.name, "topic": topic, "key_prefix": prefix, "seed": seed, **summary.as_dict()}
    emit(data, as_json, lambda _: render_summary(summary, topic) + f"\nkey prefix {prefix}, seed {seed}")
