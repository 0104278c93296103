"""``streamlake land`` (a lander process) and ``streamlake lake ...`` (tables, SQL, verification, maintenance)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from ..catalog import load_catalog
from ..config import load_settings
from ..errors import StreamLakeError
from .output import emit, friendly_errors, json_option, table

__all__ = ["land", "lake"]


@click.command("land")
@click.option("--web-port", type=click.IntRange(0, 65535), default=None,
              help="Port of /health, /ready and /metrics (default [lake] web_port, 6067; 0: any free port, "
                   "logged once it listens).")
@click.option("--web-host", default="127.0.0.1", show_default=True,
              help="Address the web server binds to; loopback unless a platform must reach it.")
@click.option("--without-web", is_flag=True, help="Serve no web endpoints.")
@click.option("--stream", "streams", multiple=True, help="Land only this stream (repeatable; default all).")
@click.option("-l", "--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@friendly_errors
def land(web_port: int | None, web_host: str, without_web: bool, streams: tuple[str, ...], loglevel: str) -> None:
    """Run a lander: consume the valid topics in the group <app id>-land and land them in Iceberg tables."""
    from ..lake.info import lake_targets
    from ..lake.lander import run_lander
    from ..lake.settings import load_lake_settings

    logging.basicConfig(level=loglevel.upper(), stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka", "pyiceberg", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    settings = load_settings()
    lake_settings = load_lake_settings(settings)
    targets = lake_targets(settings)
    if streams:
        unknown = sorted(set(streams) - {t.stream.name for t in targets})
        if unknown:
            raise StreamLakeError(f"unknown stream(s) {', '.join(unknown)}; declared: "
                                  f"{', '.join(t.stream.name for t in targets)}")
        targets = [t for t in targets if t.stream.name in streams]
    if not targets:
        raise StreamLakeError(f"no streams declared under {settings.topologies_dir}: nothing to land")
    catalog = load_catalog(settings, [t.stream for t in targets])
    port = None if without_web else (lake_settings.web_port if web_port is None else web_port)
    run_lander(settings, lake_settings, targets, catalog, web_host, port)


@click.group("lake")
def lake() -> None:
    """The lake: tables, snapshots, SQL, verification against Kafka, compaction and expiry."""


def _render_tables(rows: list[dict[str, Any]]) -> str:
    return table([[r["name"], r["stream"], "yes" if r["exists"] else "no", r["rows"], r["data_files"],
                   r["snapshots"], r["newest_event_time"] or "-", r["last_commit"] or "-"] for r in rows],
                 ["table", "stream", "exists", "rows", "files", "snapshots", "newest event time", "last commit"])


@lake.command("tables")
@json_option
@friendly_errors
def tables_command(as_json: bool) -> None:
    """List every stream's table: rows, files, snapshots and freshness."""
    from ..lake.info import list_tables

    rows = [t.as_dict() for t in list_tables(load_settings())]
    emit(rows, as_json, _render_tables)


@lake.command("describe")
@click.argument("name")
@json_option
@friendly_errors
def describe_command(name: str, as_json: bool) -> None:
    """Show one table: columns, partition spec, offsets, properties."""
    from ..lake.info import table_info

    info = table_info(load_settings(), name).as_dict()

    def render(d: dict[str, Any]) -> str:
        if not d["exists"]:
            return f"{d['name']} (stream {d['stream']}, topic {d['topic']}): not created yet; run `streamlake land`"
        lines = [f"{d['name']}  (stream {d['stream']}, topic {d['topic']})", f"location: {d['location']}",
                 f"rows {d['rows']}, data files {d['data_files']}, {d['size_bytes']} bytes, "
                 f"{d['snapshots']} snapshot(s); partitioned by {d['partition_spec']}",
                 f"newest event time {d['newest_event_time'] or '-'}, last commit {d['last_commit'] or '-'}", "",
                 table([[c["id"], c["name"], c["type"], "required" if c["required"] else ""] for c in d["columns"]],
                       ["id", "column", "type", ""]), "",
                 table([[p, o] for p, o in d["offsets"].items()], ["partition", "landed up to (next offset)"])]
        return "\n".join(lines)

    emit(info, as_json, render)


@lake.command("history")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@friendly_errors
def history_command(name: str, limit: int, as_json: bool) -> None:
    """Show the table's newest snapshots (commits)."""
    from ..lake.info import table_history

    rows = [s.as_dict() for s in table_history(load_settings(), name, limit)]
    emit(rows, as_json, lambda rs: table(
        [[r["snapshot_id"], r["committed_at"], r["operation"], r["added_rows"], r["total_rows"], r["added_files"],
          r["landed_by"] or "-"] for r in rs],
        ["snapshot", "committed at", "operation", "added rows", "total rows", "files", "landed by"]))


@lake.command("query")
@click.argument("sql")
@json_option
@friendly_errors
def query_command(sql: str, as_json: bool) -> None:
    """Run SQL (DuckDB) over the lake; tables are named by identifier, e.g. sales.orders_v1."""
    from ..lake.query import query_lake

    result = query_lake(load_settings(), sql)
    emit(result.records(), as_json, lambda _: table([list(r) for r in result.rows], result.columns)
         if result.columns else "(no result)")


@lake.command("verify")
@click.argument("name")
@json_option
@friendly_errors
def verify_command(name: str, as_json: bool) -> None:
    """Check the table against Kafka: no duplicate (_key, _seq), no missing offsets. Exit 1 on any discrepancy."""
    from ..lake.verify import verify_table

    report = verify_table(load_settings(), name)
    d = report.as_dict()

    def render(d: dict[str, Any]) -> str:
        return "\n".join([
            f"{d['table']} against {d['topic']}: {'OK' if d['ok'] else 'DISCREPANCIES'}",
            f"records {d['records']} = landed {d['landed']} + landing DLQ {d['dlq']} + duplicates dropped "
            f"{d['duplicates_dropped']} (missing {d['missing']})",
            f"rows {d['rows']}, duplicate (_key, _seq) rows {d['duplicate_rows']}, rows past the landed offsets "
            f"{d['rows_past_offsets']}",
            *( [f"missing (partition, offset), first ones: {d['missing_sample']}"] if d["missing"] else [])])

    emit(d, as_json, render)
    if not report.ok:
        raise SystemExit(1)


@lake.command("compact")
@click.argument("name", required=False)
@click.option("--execute", is_flag=True, help="Rewrite the files (default: say what would be rewritten).")
@click.option("--min-files", type=click.IntRange(2), default=4, show_default=True,
              help="Rewrite a day partition once it has this many data files.")
@json_option
@friendly_errors
def compact_command(name: str | None, execute: bool, min_files: int, as_json: bool) -> None:
    """Rewrite each day partition's small files as one (row count and offsets unchanged). Dry run by default."""
    from ..lake.maintenance import compact_tables

    plans = [p.as_dict() for p in compact_tables(load_settings(), name, execute, min_files)]

    def render(ps: list[dict[str, Any]]) -> str:
        lines = []
        for p in ps:
            verb = "rewrote" if p["executed"] else "would rewrite"
            lines.append(f"{p['table']}: {verb} {len(p['rewrites'])} day partition(s); rows "
                         f"{p['rows_before']} -> {p['rows_after']}" + (f" ({p['note']})" if p["note"] else ""))
            lines += [f"  {r['day']}: {r['files']} files, {r['rows']} rows"
                      + (f" - skipped: {r['skipped']}" if r["skipped"] else "") for r in p["rewrites"]]
        if not execute:
            lines.append("dry run: nothing changed; add --execute to rewrite")
        return "\n".join(lines)

    emit(plans, as_json, render)


@lake.command("expire")
@click.argument("name", required=False)
@click.option("--execute", is_flag=True, help="Expire and delete (default: say what would go).")
@click.option("--older-than", type=click.FloatRange(min=0), default=None,
              help="Seconds; default [lake] expire_older_than (1 day).")
@click.option("--retain-last", type=click.IntRange(1), default=None, help="Snapshots always kept; default 10.")
@json_option
@friendly_errors
def expire_command(name: str | None, execute: bool, older_than: float | None, retain_last: int | None,
                   as_json: bool) -> None:
    """Expire old snapshots and remove orphan files. Dry run by default."""
    from ..lake.maintenance import expire_tables

    plans = [p.as_dict() for p in expire_tables(load_settings(), name, execute, older_than, retain_last)]

    def render(ps: list[dict[str, Any]]) -> str:
        verb = "expired" if execute else "would expire"
        lines = [f"{p['table']}: {verb} {p['snapshots_expired']} snapshot(s), "
                 f"{'removed' if execute else 'would remove'} {p['orphan_files']} orphan file(s) "
                 f"({p['orphan_bytes']} bytes)" + (f" ({p['note']})" if p["note"] else "") for p in ps]
        if not execute:
            lines.append("dry run: nothing changed; add --execute to expire")
        return "\n".join(lines)

    emit(plans, as_json, render)
