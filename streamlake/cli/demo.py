"""``streamlake demo``: the main job end to end on the local broker, with a reconciliation table."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from .output import emit, friendly_errors, json_option, table

if TYPE_CHECKING:  # the demo library (lake, DuckDB, the console process) loads only when the demo runs
    from ..demo import DemoProgress, DemoResult


def render_progress(p: DemoProgress) -> str:
    c = p.counted
    return (f"{p.elapsed:6.1f}s  produced {p.produced}/{p.target} ({p.produce_rate:,.0f}/s)  "
            f"in {c.records_in} ({p.process_rate:,.0f}/s)  fwd {c.forwarded}  dropped {c.dropped}  "
            f"dlq {c.dlq}  lag {p.lag}  dlq depth {p.dlq_depth}")


def _printer(tty: bool):
    last = [0.0]

    def show(p: DemoProgress) -> None:
        line = render_progress(p)
        if tty:
            click.echo(f"\r\x1b[K{line}", nl=False)
        elif p.elapsed - last[0] >= 5 or p.produced == p.target:
            last[0] = p.elapsed
            click.echo(line)
    return show


def render_result(result: DemoResult) -> str:
    lines = []
    rec = result.reconciliation
    if result.interrupted:
        lines.append("interrupted: workers stopped; numbers below are what was counted so far")
    if rec is not None:
        rows = [[name, counted, "-" if expected is None else expected,
                 "" if expected is None or counted == expected else "differs"] for name, counted, expected in rec.rows()]
        lines += ["", "reconciliation (sales.orders, from the counters changelog):",
                  table(rows, ["", "counted", "expected", ""]), ""]
        c = rec.counted
        lines.append(f"check in = forwarded + dropped + dlq: {c.records_in} = {c.forwarded} + {c.dropped} + {c.dlq}"
                     f"  {'OK' if rec.balanced else 'FAILED'}")
        lines.append(f"check in = produced: {c.records_in} = {rec.produced.produced}  {'OK' if rec.complete else 'FAILED'}")
        lines.append(f"check every record ended where its kind says: {'OK' if rec.as_expected else 'FAILED'}")
    if result.lake is not None:
        lake = result.lake
        lines += ["", f"lake ({lake.table}, landed by the lander through the Procfile):",
                  f"check rows landed = forwarded: {lake.landed} = {lake.forwarded}  "
                  f"{'OK' if lake.landed == lake.forwarded else 'FAILED'}",
                  f"check duplicate (_key, _seq) rows: {lake.duplicate_rows} of {lake.rows}  "
                  f"{'OK' if lake.duplicate_rows == 0 else 'FAILED'}",
                  f"check landing lag: {lake.landing_lag}  {'OK' if lake.landing_lag == 0 else 'FAILED'}",
                  "", "amount per currency (DuckDB over the Iceberg table, whole table):",
                  table([list(row) for row in lake.answer], lake.answer_columns)]
    t = result.timings
    order = ["jars", "broker", "topics", "workers", "lander", "produce", "process", "land", "stop-workers",
             "stop-broker", "total"]
    lines += ["", "timings: " + ", ".join(f"{k} {t[k]:.1f}s" for k in order if k in t)]
    return "\n".join(lines)


@click.command("demo")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Workers to run through the Procfile (at most the partition count).")
@click.option("--events", type=click.IntRange(0), default=20_000, show_default=True, help="Records to produce.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=5_000.0, show_default=True,
              help="Records per second.")
@click.option("--bad-ratio", type=click.FloatRange(0.0, 0.5), default=0.01, show_default=True,
              help="Share of malformed records.")
@click.option("--keys", type=click.IntRange(1), default=1_000, show_default=True, help="Distinct order ids.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed of the load.")
@click.option("--keep-running", is_flag=True, help="Keep workers and the live view running after the load; Ctrl-C stops.")
@json_option
@friendly_errors
def demo(workers: int, events: int, rate: float, bad_ratio: float, keys: int, seed: int, keep_running: bool,
         as_json: bool) -> None:
    """Start the local broker, apply topics, run N workers and a sample load, then reconcile the counts."""
    from ..demo import DemoOptions, run_demo

    options = DemoOptions(workers=workers, events=events, rate=rate, bad_ratio=bad_ratio, keys=keys, seed=seed,
                          keep_running=keep_running)
    tty = sys.stdout.isatty() and not as_json
    say = (lambda msg: click.echo(msg, err=True)) if as_json else click.echo
    result = run_demo(options, asyncio.run, say=say, show=None if as_json else _printer(tty))
    if tty:
        click.echo()
    data = {"reconciliation": result.reconciliation.as_dict() if result.reconciliation else None,
            "timings": result.timings, "interrupted": result.interrupted, "broker": result.broker,
            "workers": result.workers, "worker_log": result.worker_log, "console": result.console,
            "lake": result.lake.as_dict() if result.lake else None, "lander_log": result.lander_log}
    emit(data, as_json, lambda _: render_result(result))
    if result.reconciliation is None or not result.reconciliation.ok or (result.lake is not None
                                                                         and not result.lake.ok):
        raise SystemExit(1)
