"""``streamlake produce``: load a file into a stream; ``streamlake produce-sample``: the demo's load generator.

``produce`` exit codes: 0 every line was acknowledged; 1 a line was rejected
(refused by the stream's rules or not acknowledged; see the rejects file)
unless ``--allow-rejects``, or the command could not run; 2 bad arguments.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from ..catalog import TopicRole, load_catalog
from ..config import Settings, load_settings
from ..core.sample import SampleMix, SampleSummary, generate_sample
from ..errors import StreamLakeError
from ..kafka.sample_producer import produce_sample
from ..producer import SequenceSource, find_stream
from ..producer.files import FileFormat, ProduceSummary, default_rejects_path, format_of, produce_file
from ..topology import Partitioning, Stream, discover_streams
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
    # wrong-partition records are malformed only for strict streams; repartition moves them
    misroute = partitions > 1 and stream.partitioning is Partitioning.STRICT
    records = generate_sample(events, keys, mix, seed, key_prefix=prefix, misroute=misroute)
    summary = asyncio.run(produce_sample(settings, topic, partitions, records, rate, stream.policies))
    data = {"stream": stream.name, "topic": topic, "key_prefix": prefix, "seed": seed, **summary.as_dict()}
    emit(data, as_json, lambda _: render_summary(summary, topic) + f"\nkey prefix {prefix}, seed {seed}")


def render_produce_summary(data: dict) -> str:
    lines = [f"{data['source']} -> {data['topic']}: {data['lines']} line(s), {data['delivered']} acknowledged, "
             f"{data['rejected']} rejected in {data['seconds']} s"]
    if data["rejected"]:
        lines.append(table([[reason, n] for reason, n in sorted(data["rejected_by_reason"].items())],
                           ["reason", "lines"]))
        lines.append(f"rejected lines (with line number, stage and reason): {data['rejects_file']}")
    return "\n".join(lines)


@click.command("produce")
@click.option("--stream", "stream_name", required=True,
              help="Logical stream name (<domain>.<dataset>) declared under topologies/.")
@click.argument("source", default="-", metavar="[FILE|-]")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="Input format (default: from the file's extension; required for standard input).")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where rejected lines go (default: <FILE>.rejects.jsonl).")
@click.option("--allow-rejects", is_flag=True, help="Exit 0 even when lines were rejected.")
@click.option("--seq", "seq_source", type=click.Choice([s.value for s in SequenceSource]), default="field",
              show_default=True, help="field: each line carries its sequence; allocate: number each key's lines "
                                      "from a local store (one producer per key).")
@click.option("--seq-store", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The allocator's file with --seq allocate "
                   "(default: .streamlake/producer/<stream>.sequences.sqlite).")
@json_option
@friendly_errors
def produce_command(stream_name: str, source: str, fmt: str | None, rejects_path: Path | None, allow_rejects: bool,
                    seq_source: str, seq_store: Path | None, as_json: bool) -> None:
    """Send a JSON Lines or CSV file (or - for standard input) to a stream, checked by the stream's rules."""
    settings = load_settings()
    stream = find_stream(settings, stream_name)
    if source == "-" and fmt is None:
        raise click.UsageError("reading standard input needs --format jsonl or --format csv")
    file_format = format_of(source, fmt)
    rejects = rejects_path or default_rejects_path(source)
    handle: IO[bytes]
    try:
        handle = sys.stdin.buffer if source == "-" else open(source, "rb")
    except OSError as exc:
        raise StreamLakeError(f"cannot read {source}: {exc.strerror}") from None
    show_bar = not as_json and sys.stderr.isatty() and source != "-"
    try:
        if show_bar:
            with click.progressbar(length=Path(source).stat().st_size, label="producing", file=sys.stderr) as bar:
                summary = _run(settings, stream, source, handle, file_format, rejects, seq_source, seq_store,
                               lambda _lines: bar.update(handle.tell() - bar.pos))
        else:
            summary = _run(settings, stream, source, handle, file_format, rejects, seq_source, seq_store, None)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    emit(summary.as_dict(), as_json, render_produce_summary)
    if summary.rejected and not allow_rejects:
        sys.exit(1)


def _run(settings: Settings, stream: Stream, source: str, handle: IO[bytes], file_format: FileFormat, rejects: Path,
         seq_source: str, seq_store: Path | None, on_progress: Callable[[int], None] | None) -> ProduceSummary:
    return asyncio.run(produce_file(settings, stream, source, handle, file_format, rejects, SequenceSource(seq_source),
                                    seq_store, on_progress))
