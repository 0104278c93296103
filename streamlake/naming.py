"""The one place that builds names: topics, DLQs, retries, changelogs, groups.

Physical topic name: ``[<prefix>.]<domain>.<dataset>.<stage>.v<N>``.
Nothing else in StreamLake formats a topic name; everything asks this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import TopicNameError

__all__ = [
    "STAGES",
    "MAX_TOPIC_LENGTH",
    "TopicName",
    "topic_name",
    "parse_topic_name",
    "validate_topic_name",
    "validate_segment",
    "dlq_topic_for",
    "retry_topic_for",
    "source_of_derived",
    "table_name_for",
    "changelog_topic_for",
    "consumer_group_for",
    "find_metric_collisions",
]

#: Stage words and what they mean. ``raw``: as ingested; ``valid``: passed
#: validation and ordering checks; ``enriched``: a transform added data;
#: ``curated``: modelled for consumers.
STAGES = ("raw", "valid", "enriched", "curated")
DERIVED_SUFFIXES = ("dlq", "retry")
MAX_TOPIC_LENGTH = 249

_SEGMENT = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ALLOWED = re.compile(r"^[a-z0-9.\-]*$")
_VERSION = re.compile(r"^v[1-9][0-9]*$")


@dataclass(frozen=True, order=True)
class TopicName:
    """A parsed physical topic name."""

    domain: str
    dataset: str
    stage: str
    version: int
    prefix: str = ""

    def __str__(self) -> str:
        parts = [self.prefix] if self.prefix else []
        parts += [self.domain, self.dataset, self.stage, f"v{self.version}"]
        return ".".join(parts)

    def with_stage(self, stage: str) -> "TopicName":
        return topic_name(self.domain, self.dataset, stage, self.version, self.prefix)


def validate_segment(segment: str, what: str, full: str | None = None) -> None:
    """Check one dot-free segment (prefix, domain, dataset)."""
    name = full if full is not None else segment
    if segment == "":
        raise TopicNameError(name, "empty-segment", f"the {what} segment is empty; every segment needs at least one character")
    if "_" in segment:
        raise TopicNameError(name, "no-underscore",
                             "'_' is not allowed: Kafka metric names turn '.' into '_', so the two could collide; use '-'")
    if any(c.isupper() for c in segment):
        raise TopicNameError(name, "lowercase", f"the {what} segment {segment!r} has an uppercase letter; use lowercase")
    if not _ALLOWED.match(segment) or "." in segment:
        bad = sorted({c for c in segment if not re.match(r"[a-z0-9\-]", c)})
        raise TopicNameError(name, "charset",
                             f"the {what} segment {segment!r} has {''.join(bad)!r}; only a-z, 0-9 and '-' are allowed")
    if not _SEGMENT.match(segment):
        raise TopicNameError(name, "hyphen-inside", f"'-' may only join characters inside a segment, not start or end {segment!r}")


def topic_name(domain: str, dataset: str, stage: str, version: int, prefix: str = "") -> TopicName:
    """Build and validate a physical topic name."""
    for segment, what in ((domain, "domain"), (dataset, "dataset")):
        validate_segment(segment, what)
    if prefix:
        for part in prefix.split("."):
            validate_segment(part, "prefix")
    if stage not in STAGES:
        raise TopicNameError(stage, "stage", f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TopicNameError(str(version), "version", "the version must be a positive integer (v1, v2, ...)")
    name = TopicName(domain, dataset, stage, version, prefix)
    validate_topic_name(str(name))
    return name


def validate_topic_name(name: str) -> None:
    """Raise :class:`TopicNameError` naming the first rule *name* breaks.

    Accepts source names and derived (``.dlq``/``.retry``) names.
    """
    if name in (".", ".."):
        raise TopicNameError(name, "dot-name", "Kafka forbids the names '.' and '..'")
    if len(name) > MAX_TOPIC_LENGTH:
        raise TopicNameError(name, "length", f"{len(name)} characters; Kafka allows at most {MAX_TOPIC_LENGTH}")
    if "_" in name:
        raise TopicNameError(name, "no-underscore",
                             "'_' is not allowed: Kafka metric names turn '.' into '_', so the two could collide; use '-'")
    if any(c.isupper() for c in name):
        raise TopicNameError(name, "lowercase", "uppercase letters are not allowed; use lowercase")
    if not _ALLOWED.match(name):
        bad = "".join(sorted({c for c in name if not re.match(r"[a-z0-9.\-]", c)}))
        raise TopicNameError(name, "charset", f"character(s) {bad!r} not allowed; only a-z, 0-9, '-' and '.' as separator")
    parts = name.split(".")
    if any(p == "" for p in parts):
        raise TopicNameError(name, "empty-segment", "a segment is empty (leading, trailing or doubled '.')")
    for part in parts:
        if not _SEGMENT.match(part):
            raise TopicNameError(name, "hyphen-inside", f"'-' may only join characters inside a segment, not start or end {part!r}")
    while parts and parts[-1] in DERIVED_SUFFIXES:
        parts = parts[:-1]
    if len(parts) < 4:
        raise TopicNameError(name, "shape", "expected [<prefix>.]<domain>.<dataset>.<stage>.v<N>")
    version = parts[-1]
    if not _VERSION.match(version):
        raise TopicNameError(name, "version",
                             f"the last segment {version!r} must be v<N> with N a positive integer without leading zero")
    if parts[-2] not in STAGES:
        raise TopicNameError(name, "stage", f"unknown stage {parts[-2]!r}; use one of {', '.join(STAGES)}")


def parse_topic_name(name: str) -> TopicName:
    """Parse a source (non-derived) physical name back into its parts."""
    validate_topic_name(name)
    parts = name.split(".")
    if parts[-1] in DERIVED_SUFFIXES:
        raise TopicNameError(name, "shape", "this is a derived (.dlq/.retry) name, not a source topic")
    *head, domain, dataset, stage, version = parts
    return TopicName(domain, dataset, stage, int(version[1:]), ".".join(head))


def dlq_topic_for(source: TopicName | str) -> str:
    """``<source>.dlq``."""
    return _derived(source, "dlq")


def retry_topic_for(source: TopicName | str) -> str:
    """``<source>.retry``."""
    return _derived(source, "retry")


def _derived(source: TopicName | str, suffix: str) -> str:
    name = f"{source}.{suffix}"
    validate_topic_name(name)
    return name


def source_of_derived(name: str) -> str:
    """The source topic of a ``.dlq`` or ``.retry`` name."""
    head, _, suffix = name.rpartition(".")
    if suffix not in DERIVED_SUFFIXES:
        raise TopicNameError(name, "shape", "not a derived (.dlq/.retry) topic name")
    return head


def table_name_for(source: TopicName | str, purpose: str = "seq") -> str:
    """Name of a Faust table that belongs to *source* (e.g. its sequence state)."""
    return f"{source}.{purpose}"


def changelog_topic_for(app_id: str, table: str) -> str:
    """Faust's changelog topic for *table*: ``<app id>-<table>-changelog``."""
    return f"{app_id}-{table}-changelog"


def consumer_group_for(app_id: str) -> str:
    """The consumer group: Faust uses the app id as the group id."""
    return app_id


def find_metric_collisions(names: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of names that map to the same metric name once '.' becomes '_'."""
    seen: dict[str, set[str]] = {}
    for name in names:
        seen.setdefault(name.replace(".", "_"), set()).add(name)
    return [tuple(sorted(group)) for group in seen.values() if len(group) > 1]
