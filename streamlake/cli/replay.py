"""``streamlake replay reset-offsets|window``: re-read history by offset or by time."""

from __future__ import annotations

import asyncio

import click

from ..config import load_settings
from ..core.replay import ReplayPlan, WindowPlan
from ..core.replay_options import reset_spec_from_options, write_plan_csv
from ..kafka import replay as lib
from .output import emit, friendly_errors, json_option, table


@click.group()
def replay() -> None:
    """Reset a consumer group's offsets, or re-publish a time window of a topic."""


@replay.command("reset-offsets")
@click.option("--group", required=True, help="Consumer group (the app id of the workers).")
@click.option("--topic", "topics", multiple=True, metavar="T[:P,P...]",
              help="Topic, or topic:partitions, to reset. Repeatable.")
@click.option("--all-topics", is_flag=True, help="Every partition the group has a committed offset for.")
@click.option("--to-datetime", metavar="ISO", help="yyyy-MM-ddTHH:mm:ss.SSS[Z|+HH:MM] (UTC without a zone).")
@click.option("--by-duration", metavar="ISO8601-DURATION", help="Now minus a duration: PT1H, P1DT2H30M ...")
@click.option("--to-earliest", is_flag=True, help="The earliest offset still in the log.")
@click.option("--to-latest", is_flag=True, help="The end of the log (skip everything).")
@click.option("--to-offset", type=int, metavar="N", help="Offset N, clamped to [earliest, latest].")
@click.option("--shift-by", type=int, metavar="N", help="Committed offset + N (negative re-reads), clamped.")
@click.option("--from-file", type=click.Path(dir_okay=False), metavar="CSV",
              help="topic,partition,offset lines, e.g. a previous --export.")
@click.option("--dry-run/--execute", "dry_run", default=True,
              help="Only print the plan (default), or commit it.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False), metavar="CSV",
              help="Also write the plan as Kafka's CSV (topic,partition,offset).")
@json_option
@friendly_errors
def reset_offsets(group: str, topics: tuple[str, ...], all_topics: bool, to_datetime: str | None,
                  by_duration: str | None, to_earliest: bool, to_latest: bool, to_offset: int | None,
                  shift_by: int | None, from_file: str | None, dry_run: bool, export_path: str | None,
                  as_json: bool) -> None:
    """Move a stopped group's committed offsets, like kafka-consumer-groups --reset-offsets."""
    settings = load_settings()
    spec = reset_spec_from_options(
        group=group, to_datetime=to_datetime, by_duration=by_duration, to_earliest=to_earliest,
        to_latest=to_latest, to_offset=to_offset, shift_by=shift_by, from_file=from_file)
    plan = asyncio.run(lib.plan_offset_reset(settings, group, spec, topics, all_topics))
    if export_path:
        write_plan_csv(plan, export_path)
    if dry_run:
        emit({**plan.to_dict(), "dry_run": True, "export": export_path}, as_json, lambda _: (
            _render_plan(plan) + "\n\nDry run: nothing was changed. Rerun with --execute to commit these offsets."
            + (f"\nPlan exported to {export_path}" if export_path else "")))
        return
    result = asyncio.run(lib.execute_offset_reset(settings, plan))
    emit({**result.to_dict(), "dry_run": False, "export": export_path}, as_json, lambda _: (
        _render_plan(plan) + "\n\n" + (
            f"Committed new offsets for {result.committed} partition(s) of group {group!r}."
            if result.outcome is lib.ResetOutcome.APPLIED
            else f"Group {group!r} is already at these offsets: nothing to change.")
        + (f"\nPlan exported to {export_path}" if export_path else "")))


def _render_plan(plan: ReplayPlan) -> str:
    head = f"Group {plan.group} ({plan.group_state.value}), {plan.spec.describe()}"
    if not plan.rows:
        return head + "\n(no partitions)"
    rows = [[r.topic, r.partition, "-" if r.current is None else r.current, r.target,
             "-" if r.moves is None else f"{r.moves:+d}", r.earliest, r.latest, "yes" if r.clamped else ""]
            for r in plan.rows]
    return head + "\n" + table(rows, ["TOPIC", "PARTITION", "CURRENT", "TARGET", "MOVES", "EARLIEST", "LATEST", "CLAMPED"])


@replay.command("window")
@click.option("--topic", required=True, help="Topic to read the window from.")
@click.option("--start", required=True, metavar="ISO", help="Window start, included (Kafka's datetime format).")
@click.option("--end", required=True, metavar="ISO", help="Window end, excluded.")
@click.option("--into", default=None, metavar="TOPIC", help="Where to re-publish (default: --topic itself).")
@click.option("--key", default=None, metavar="K", help="Only records whose key is K (UTF-8).")
@click.option("--dry-run/--execute", "dry_run", default=True, help="Only print the plan (default), or replay.")
@click.option("--replay-id", default=None, help="Replay id for the provenance header (default: a new uuid4 hex).")
@json_option
@friendly_errors
def window(topic: str, start: str, end: str, into: str | None, key: str | None, dry_run: bool,
           replay_id: str | None, as_json: bool) -> None:
    """Re-publish the records of [start, end) with provenance headers; the live group keeps running."""
    settings = load_settings()
    plan = asyncio.run(lib.plan_window(settings, topic, start, end, into=into, key=key, replay_id=replay_id))
    if dry_run:
        emit({**plan.to_dict(), "dry_run": True}, as_json, lambda _: (
            _render_window_plan(plan) + "\n\nDry run: nothing was sent. Rerun with --execute to replay."))
        return
    if as_json or plan.upper_bound == 0:
        result = asyncio.run(lib.replay_window(settings, plan))
    else:
        with click.progressbar(length=plan.upper_bound, label=f"replaying {topic} -> {plan.into}",
                               file=click.get_text_stream("stderr")) as bar:
            result = asyncio.run(lib.replay_window(settings, plan, on_progress=bar.update))
    emit({**result.to_dict(), "dry_run": False}, as_json, lambda _: _render_window_result(result))


def _render_window_plan(plan: WindowPlan) -> str:
    rows = [[p.partition, p.first_offset, p.stop_offset, p.upper_bound] for p in plan.partitions]
    key = "" if plan.key is None else f", key {plan.key.decode('utf-8', 'replace')!r}"
    return (f"Window [{plan.start_ms}, {plan.end_ms}) ms of {plan.topic} -> {plan.into}{key}, replay id {plan.replay_id}\n"
            + table(rows, ["PARTITION", "FROM-OFFSET", "STOP-OFFSET", "AT-MOST"]))


def _render_window_result(result: lib.WindowResult) -> str:
    rows = [[p.partition, p.first_offset, p.stop_offset, c.replayed, c.skipped_key, c.skipped_before_start]
            for p in result.plan.partitions for c in [result.by_partition[p.partition]]]
    return (_render_window_plan(result.plan).split("\n", 1)[0] + "\n"
            + table(rows, ["PARTITION", "FROM-OFFSET", "STOP-OFFSET", "REPLAYED", "SKIPPED-KEY", "SKIPPED-EARLY"])
            + f"\n\nReplayed {result.replayed} record(s) into {result.plan.into} (replay id {result.plan.replay_id}).")
