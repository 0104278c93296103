"""``streamlake dlq stats|inspect|export|redrive``: look into DLQ topics and send records back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import click

from ..config import load_settings
from ..core.dlq_policy import DlqFilter, HeaderStyle, parse_time
from ..kafka.dlq import dlq_stats, export_dlq, inspect_dlq
from ..kafka.redrive import RedriveMode, redrive_dlq
from .output import emit, friendly_errors, json_option, table

__all__ = ["dlq"]


@click.group()
def dlq() -> None:
    """Inspect DLQ topics and redrive their records to the source."""


def _filter_options(fun: Callable) -> Callable:
    for option in reversed((
        click.option("--reason", default=None, help="Only this reason code (e.g. transform-error)."),
        click.option("--stage", default=None, help="Only this stage (decode, validate, key, sequence, process, produce)."),
        click.option("--since", default=None, help="Dead-lettered at or after this ISO 8601 time (UTC if no zone)."),
        click.option("--until", default=None, help="Dead-lettered before this ISO 8601 time."),
        click.option("--key", default=None, help="Only records with this key (UTF-8)."),
    )):
        fun = option(fun)
    return fun


def _build_filter(reason: str | None, stage: str | None, since: str | None, until: str | None,
                  key: str | None) -> DlqFilter:
    return DlqFilter(
        reason=reason, stage=stage,
        since_ms=parse_time(since, "--since") if since else None,
        until_ms=parse_time(until, "--until") if until else None,
        key=key.encode() if key is not None else None,
    )


_style_option = click.option(
    "--header-style", type=click.Choice([s.value for s in HeaderStyle]), default=HeaderStyle.STREAMLAKE.value,
    show_default=True, help="Show the DLQ context under StreamLake, Kafka Connect or Spring Kafka header names.")


@dlq.command()
@click.option("--stream", default=None, help="Only this stream (<domain>.<dataset>).")
@json_option
@friendly_errors
def stats(stream: str | None, as_json: bool) -> None:
    """Counts by stage and reason, depth per partition, failure times, retried and parked counts."""
    emit(asyncio.run(dlq_stats(load_settings(), stream)), as_json, _render_stats)


def _render_stats(data: dict[str, Any]) -> str:
    out = []
    for name, s in data["streams"].items():
        if not s.get("exists"):
            out.append(f"{name}: DLQ topic {s['topic']} does not exist yet")
            continue
        out.append(f"{name}  ({s['topic']})")
        out.append(f"  records {s['records']}  retried {s['retried']}  parked {s['parked']} "
                   f"(exhausted {s['exhausted']}, malformed {s['malformed']})  attempt cap {data['max_attempts']}")
        out.append(f"  oldest {s['oldest'] or '-'}  newest {s['newest'] or '-'}")
        depth = "  ".join(f"p{p}={d}" for p, d in sorted(s["depth"].items(), key=lambda i: int(i[0])))
        out.append(f"  depth {s['depth_total']}: {depth}")
        if s["by_reason"]:
            rows = [[r["stage"], r["reason"], r["count"], r["oldest"], r["newest"]] for r in s["by_reason"]]
            text = table(rows, ["stage", "reason", "count", "oldest", "newest"])
            out.append("\n".join("  " + line for line in text.splitlines()))
    return "\n".join(out) or "no streams declared"


@dlq.command()
@click.option("--topic", required=True, help="The DLQ topic (<source>.dlq).")
@_filter_options
@click.option("--limit", type=int, default=20, show_default=True, help="Show at most this many records.")
@click.option("--preview", "preview_chars", type=click.IntRange(16, 100_000), default=200, show_default=True,
              help="Characters of each value (and header) to show.")
@_style_option
@json_option
@friendly_errors
def inspect(topic: str, reason: str | None, stage: str | None, since: str | None, until: str | None,
            key: str | None, limit: int, preview_chars: int, header_style: str, as_json: bool) -> None:
    """Print matching DLQ records: context headers and a safe, truncated value preview."""
    filt = _build_filter(reason, stage, since, until, key)
    found = asyncio.run(inspect_dlq(load_settings(), topic, filt, limit, HeaderStyle(header_style), preview_chars))
    emit(found, as_json, _render_inspect)


def _render_inspect(records: list[dict[str, Any]]) -> str:
    if not records:
        return "no matching DLQ records"
    out = []
    for r in records:
        out.append(f"{r['topic']}[{r['partition']}]@{r['offset']}  {r['timestamp']}  {r['stage']}/{r['reason']}  "
                   f"attempt {r['attempt']}")
        out.append(f"  key:   {r['key']}")
        out.append(f"  value: {r['value']}  ({r['value_bytes']} bytes)" if r["value_bytes"] is not None
                   else f"  value: {r['value']}")
        for name, value in r["headers"]:
            out.append(f"  {name}: {value}")
    return "\n".join(out)


@dlq.command()
@click.option("--topic", required=True, help="The DLQ topic (<source>.dlq).")
@_filter_options
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Export at most this many records.")
@_style_option
@click.option("--output", "-o", type=click.File("wb"), default="-", show_default=True,
              help="Where to write JSON lines (- is stdout).")
@friendly_errors
def export(topic: str, reason: str | None, stage: str | None, since: str | None, until: str | None,
           key: str | None, limit: int | None, header_style: str, output: Any) -> None:
    """Write matching DLQ records as JSON lines (bytes base64), optionally under Connect/Spring header names."""
    filt = _build_filter(reason, stage, since, until, key)
    count = asyncio.run(export_dlq(load_settings(), topic, filt, output, HeaderStyle(header_style), limit))
    click.echo(f"exported {count} records", err=True)


@dlq.command()
@click.option("--topic", required=True, help="The DLQ topic (<source>.dlq).")
@_filter_options
@click.option("--dry-run/--execute", "dry_run", default=True, show_default=True,
              help="Only report what would be sent (default), or send it.")
@click.option("--redrive-id", default=None, help="Name this redrive; rerun the same id to resume it. Default: new.")
@click.option("--max-attempts", type=int, default=None,
              help="Loop guard: refuse records that failed this many times (default: conf dlq.retry_attempts).")
@click.option("--limit", type=click.IntRange(1, None), default=None, help="Send at most this many, then stop cleanly.")
@json_option
@friendly_errors
def redrive(topic: str, reason: str | None, stage: str | None, since: str | None, until: str | None,
            key: str | None, dry_run: bool, redrive_id: str | None, max_attempts: int | None,
            limit: int | None, as_json: bool) -> None:
    """Send matching DLQ records back to their origin topic and partition, value bytes unchanged."""
    filt = _build_filter(reason, stage, since, until, key)
    settings = load_settings()
    mode = RedriveMode.DRY_RUN if dry_run else RedriveMode.EXECUTE
    show_bar = not as_json and sys.stderr.isatty()
    bar: Any = None

    def on_total(total: int) -> None:
        nonlocal bar
        if show_bar and total >= 1000:
            bar = click.progressbar(length=total, label="scanning DLQ", file=sys.stderr)
            bar.__enter__()

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n)

    try:
        report = asyncio.run(redrive_dlq(settings, topic, filt, mode=mode, redrive_id=redrive_id,
                                         max_attempts=max_attempts, limit=limit, progress=progress, on_total=on_total))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    emit(report.to_dict(), as_json, _render_redrive)


def _render_redrive(r: dict[str, Any]) -> str:
    dry = r["mode"] == "dry-run"
    lines = [
        f"redrive {r['redrive_id']} ({r['mode']}) from {r['topic']}",
        f"  scanned {r['scanned']}  matched {r['matched']}  {'would send' if dry else 'sent'} {r['sent']}",
        f"  refused by loop guard {r['refused_attempt_cap']}  refused without origin {r['refused_no_origin']}",
    ]
    if r["already_done"]:
        lines.append(f"  resumed after {r['already_done']} DLQ records handled by an earlier run of this id")
    for dest, n in r["by_destination"].items():
        lines.append(f"  -> {dest}: {n}")
    if r["stopped_early"]:
        lines.append(f"  stopped at --limit; rerun with --redrive-id {r['redrive_id']} to continue")
    if dry:
        lines.append(f"  dry run: nothing sent; add --execute --redrive-id {r['redrive_id']} to send")
    return "\n".join(lines)
