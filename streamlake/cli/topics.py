"""``streamlake topics check|plan|apply|list|describe|acls``: the catalog against the broker."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..catalog import Catalog, TopicRole, load_catalog
from ..config import Settings, load_settings
from ..core.acls import acl_grants, kafka_acls_command, render_command
from ..core.topic_plan import ChangeStatus, TopicPlan, topic_status
from ..kafka import admin
from ..naming import check_topic_names, dlq_topic_for
from ..topology import discover_streams
from .output import emit, friendly_errors, json_option, table


def _load() -> tuple[Settings, Catalog]:
    settings = load_settings()
    return settings, load_catalog(settings, discover_streams(settings.topologies_dir))


@click.group()
def topics() -> None:
    """Check names, and plan or apply the topic catalog against the broker."""


@topics.command()
@click.argument("names", nargs=-1, required=True)
@json_option
def check(names: tuple[str, ...], as_json: bool) -> None:
    """Check topic NAMES against the naming convention; exit 1 if any is invalid."""
    verdicts = check_topic_names(names)
    invalid = [v for v in verdicts if not v.valid]
    if as_json:
        emit([{"name": v.name, "valid": v.valid, "rule": v.rule, "why": v.why} for v in verdicts], True)
    else:
        for v in invalid:
            # repr keeps a name with odd characters (even a newline) on its one line
            click.echo(f"{v.name!r}: breaks rule {v.rule}: {v.why}")
        if not invalid:
            click.echo(f"{len(verdicts)} name(s) valid")
    if invalid:
        raise SystemExit(1)


def _render_plan(plan: TopicPlan) -> str:
    if plan.in_sync:
        return f"in sync: all {len(plan.unchanged)} catalog topics match the broker; nothing to do"
    lines = []
    for change in plan.changes:
        mark = "REFUSED" if change.status is ChangeStatus.REFUSED else "+"
        lines.append(f"{mark} {change.kind.value} {change.topic}: {change.reason}")
    lines.append(f"{len(plan.to_apply)} change(s) to apply, {len(plan.refused)} refused, "
                 f"{len(plan.unchanged)} topic(s) unchanged")
    return "\n".join(lines)


@topics.command()
@click.option("--allow-partition-increase", is_flag=True, help="Plan as apply would with this flag.")
@json_option
@friendly_errors
def plan(allow_partition_increase: bool, as_json: bool) -> None:
    """Show what apply would change: topics to create, config drift, partition mismatches."""
    settings, catalog = _load()
    result = asyncio.run(admin.plan_catalog(settings, catalog, allow_partition_increase))
    emit(result.as_dict(), as_json, lambda _: _render_plan(result))


def _render_apply(report: admin.ApplyReport) -> str:
    if report.outcome is admin.ApplyOutcome.UP_TO_DATE:
        return f"nothing changed: all {len(report.plan.unchanged)} catalog topics already match the broker"
    if report.outcome is admin.ApplyOutcome.REFUSED:
        lines = ["refused: nothing was changed"]
        lines += [f"  {c.kind.value} {c.topic}: {c.reason}" for c in report.plan.refused]
        return "\n".join(lines)
    lines = [f"applied {c.kind.value} {c.topic}: {c.reason}" for c in report.applied]
    lines.append(f"{len(report.applied)} change(s) applied")
    return "\n".join(lines)


@topics.command()
@click.option("--allow-partition-increase", is_flag=True,
              help="Grow keyed topics although keys then move to other partitions (per-key order breaks).")
@json_option
@friendly_errors
def apply(allow_partition_increase: bool, as_json: bool) -> None:
    """Create missing topics and fix config drift; idempotent, all or nothing."""
    settings, catalog = _load()
    report = asyncio.run(admin.apply_catalog(settings, catalog, allow_partition_increase))
    if as_json:
        emit(report.as_dict(), True)
    elif report.outcome is admin.ApplyOutcome.REFUSED:
        click.echo(_render_apply(report), err=True)
    else:
        emit(report, False, _render_apply)
    if report.outcome is admin.ApplyOutcome.REFUSED:
        raise SystemExit(1)


@topics.command(name="list")
@json_option
@friendly_errors
def list_(as_json: bool) -> None:
    """List the catalog's topics and how each stands on the broker."""
    settings, catalog = _load()
    result = asyncio.run(admin.plan_catalog(settings, catalog))
    rows: list[dict[str, Any]] = [
        {**spec.as_dict(), "status": topic_status(spec, result).value} for spec in catalog.topics
    ]
    emit(rows, as_json, lambda rs: table(
        [[r["name"], r["role"], r["stream"], r["partitions"], r["replication_factor"], r["status"]] for r in rs],
        ["topic", "role", "stream", "partitions", "replication", "status"]))


def _render_description(d: admin.TopicDescription) -> str:
    lines = [f"topic {d.name}"]
    if d.spec:
        lines.append(f"  catalog: {d.spec.role.value} of {d.spec.stream}, {d.spec.partitions} partitions, "
                     f"replication {d.spec.replication_factor}")
    else:
        lines.append("  catalog: not in the catalog")
    if d.observed:
        lines.append(f"  broker: {d.observed.partitions} partitions, replication {d.observed.replication_factor}")
        keys = sorted(set(d.spec.config if d.spec else {}) | set(d.observed.overrides))
        if keys:
            lines.append("  " + table([[k, d.spec.config.get(k, "-") if d.spec else "-",
                                        d.observed.config.get(k, "-")] for k in keys],
                                       ["config", "catalog", "broker"]).replace("\n", "\n  "))
        lines.append("  " + table([[p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr))]
                                   for p in d.partitions], ["partition", "leader", "replicas", "isr"]
                                  ).replace("\n", "\n  "))
    else:
        lines.append("  broker: does not exist (run `streamlake topics apply`)")
    lines += [f"  {c.status.value}: {c.kind.value}: {c.reason}" for c in d.changes]
    return "\n".join(lines)


@topics.command()
@click.argument("name")
@json_option
@friendly_errors
def describe(name: str, as_json: bool) -> None:
    """Show NAME as the catalog wants it and as the broker has it."""
    settings, catalog = _load()
    description = asyncio.run(admin.describe_topic(settings, catalog, name))
    emit(description.as_dict(), as_json, lambda _: _render_description(description))


def _principal(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    settings = load_settings()
    value = value or (f"User:{settings.security.sasl_username}" if settings.security.sasl_username else None)
    if not value:
        raise click.BadParameter("name the app's principal (--principal User:NAME), or set STREAMLAKE_SASL_USERNAME")
    if not value.startswith("User:") or value == "User:":
        raise click.BadParameter(f"{value!r} must look like User:NAME (the app's SASL user)")
    return value


@topics.command()
@click.option("--principal", callback=_principal,
              help="The app's principal, User:NAME (default: User:$STREAMLAKE_SASL_USERNAME).")
@click.option("--bootstrap", default=None, help="The brokers the commands talk to (default: the configured broker).")
@click.option("--bootstrap-controller", is_flag=True,
              help="--bootstrap names controllers (kafka-acls --bootstrap-controller).")
@click.option("--command-config", default=None, help="The admin client properties file kafka-acls should use.")
@json_option
@friendly_errors
def acls(principal: str, bootstrap: str | None, bootstrap_controller: bool, command_config: str | None,
         as_json: bool) -> None:
    """Print the kafka-acls commands that let only the app's principal use its topics and groups."""
    settings, catalog = _load()
    # the landers write records they cannot land to <valid topic>.dlq, outside the catalog
    landing_dlqs = [dlq_topic_for(t.name) for t in catalog.topics if t.role is TopicRole.OUTPUT]
    grants = acl_grants(principal, [*catalog.names, *landing_dlqs], settings.app_id)
    target = bootstrap or settings.bootstrap_servers
    commands = [kafka_acls_command(g, target, command_config, bootstrap_controller) for g in grants]
    emit([{**g.as_dict(), "command": c} for g, c in zip(grants, commands, strict=True)], as_json,
         lambda _: "\n".join(f"# {g.why}\n{render_command(c)}" for g, c in zip(grants, commands, strict=True)))
