"""The one place that builds names: topics, DLQs, retries, changelogs, groups.

Physical topic name: ``[<prefix>.]<domain>.<dataset>.<stage>.v<N>``.
Nothing else in StreamLake formats a topic name; everything asks this module.

Over 300 lines: that is the point of it. Topic names, their parsing and validation,
derived topics, changelogs, groups and lake identifiers are kept in one place so no
other module formats a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import TopicNameError

__all__ = [
    "STAGES",
    "MAX_TOPIC_LENGTH",
    "NAMING_RULES",
    "TopicName",
    "NameCheck",
    "topic_name",
    "parse_topic_name",
    "validate_topic_name",
    "validate_segment",
    "check_topic_names",
    "dlq_topic_for",
    "retry_topic_for",
    "repartition_topic_for",
    "source_of_derived",
    "table_name_for",
    "changelog_topic_for",
    "consumer_group_for",
    "redrive_group_for",
    "replay_group_for",
    "find_metric_collisions",
    "metric_name_of",
    "lake_table_identifier",
    "lake_identifier_warnings",
    "LAKE_IDENTIFIER_RULE",
]

#: Stage words and what they mean. ``raw``: as ingested; ``valid``: passed
#: validation and ordering checks; ``enriched``: a transform added data;
#: ``curated``: modelled for consumers.
STAGES = ("raw", "valid", "enriched", "curated")
DERIVED_SUFFIXES = ("dlq", "retry", "repartition")
MAX_TOPIC_LENGTH = 249
# Every source gets `.dlq`, `.retry` (and `.repartition`) topics, so a source name must leave room for them.
_LONGEST_SUFFIX = max(len(s) + 1 for s in DERIVED_SUFFIXES)

#: Rule id -> what the rule demands; rule ids appear in every TopicNameError.
NAMING_RULES: dict[str, str] = {
    "dot-name": "a name is never '.' or '..' (Kafka forbids them)",
    "length": f"at most {MAX_TOPIC_LENGTH} characters, derived .dlq/.retry/.repartition names included",
    "no-underscore": "no '_': Kafka metric names turn '.' into '_', so the two could collide",
    "lowercase": "no uppercase letters",
    "charset": "only a-z, 0-9, '-' inside a segment and '.' between segments",
    "empty-segment": "no empty segment (no leading, trailing or doubled '.')",
    "hyphen-inside": "'-' only inside a segment, never at its start or end",
    "shape": "[<prefix>.]<domain>.<dataset>.<stage>.v<N>, optionally followed by one .dlq, .retry or .repartition",
    "version": "the last segment is v<N>, N a positive integer without leading zero",
    "stage": f"the stage is one of {', '.join(STAGES)}",
}

# fullmatch everywhere: `$` would accept a trailing newline.
_SEGMENT = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_SEGMENT_CHARS = re.compile(r"[a-z0-9-]*")
_NAME_CHARS = re.compile(r"[a-z0-9.-]*")
_VERSION = re.compile(r"v[1-9][0-9]*")
# What Kafka itself accepts (for names Faust builds, such as changelogs).
_KAFKA_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


@dataclass(frozen=True, order=True)
class TopicName:
    """A parsed physical topic name; build one with :func:`topic_name`."""

    domain: str
    dataset: str
    stage: str
    version: int
    prefix: str = ""

    def __post_init__(self) -> None:
        # A dot inside a field would make a valid-looking name that parses differently.
        validate_segment(self.domain, "domain", self._draft())
        validate_segment(self.dataset, "dataset", self._draft())
        for part in self.prefix.split(".") if self.prefix else ():
            validate_segment(part, "prefix", self._draft())

    def _draft(self) -> str:
        parts = [self.prefix] if self.prefix else []
        return ".".join(parts + [self.domain, self.dataset, self.stage, f"v{self.version}"])

    def __str__(self) -> str:
        return self._draft()

    def with_stage(self, stage: str) -> TopicName:
        """Return the same dataset and version at another stage."""
        return topic_name(self.domain, self.dataset, stage, self.version, self.prefix)


@dataclass(frozen=True)
class NameCheck:
    """The verdict on one name: ``rule`` is None when the name is valid."""

    name: str
    rule: str | None = None
    why: str = ""

    @property
    def valid(self) -> bool:
        return self.rule is None


def validate_segment(segment: str, what: str, full: str | None = None) -> None:
    """Raise :class:`TopicNameError` if one dot-free segment (prefix, domain, dataset) is invalid."""
    name = full if full is not None else segment
    if segment == "":
        raise TopicNameError(name, "empty-segment", f"the {what} segment is empty; every segment needs at least one character")
    if "_" in segment:
        raise TopicNameError(name, "no-underscore",
                             "'_' is not allowed: Kafka metric names turn '.' into '_', so the two could collide; use '-'")
    if any(c.isupper() for c in segment):
        raise TopicNameError(name, "lowercase", f"the {what} segment {segment!r} has an uppercase letter; use lowercase")
    if not _SEGMENT_CHARS.fullmatch(segment):
        bad = "".join(sorted({c for c in segment if not _SEGMENT_CHARS.fullmatch(c)}))
        raise TopicNameError(name, "charset",
                             f"the {what} segment {segment!r} has {bad!r}; only a-z, 0-9 and '-' are allowed")
    if not _SEGMENT.fullmatch(segment):
        raise TopicNameError(name, "hyphen-inside", f"'-' may only appear inside a segment, not start or end {segment!r}")


def topic_name(domain: str, dataset: str, stage: str, version: int, prefix: str = "") -> TopicName:
    """Build and validate a physical topic name.

    Raises:
        TopicNameError: naming the broken rule, with the name as it would have been.
    """
    draft = ".".join(([prefix] if prefix else []) + [domain, dataset, str(stage), f"v{version}"])
    if stage not in STAGES:
        raise TopicNameError(draft, "stage", f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise TopicNameError(draft, "version", f"the version must be a positive integer (1, 2, ...), got {version!r}")
    name = TopicName(domain, dataset, stage, version, prefix)
    text = str(name)
    validate_topic_name(text)
    if len(text) + _LONGEST_SUFFIX > MAX_TOPIC_LENGTH:
        raise TopicNameError(text, "length", f"{len(text)} characters leaves no room for its derived topics "
                             f"('.dlq', '.retry', '.repartition'); keep source names at most "
                             f"{MAX_TOPIC_LENGTH - _LONGEST_SUFFIX}")
    return name


def validate_topic_name(name: str) -> None:
    """Raise :class:`TopicNameError` naming the first rule *name* breaks.

    Accepts source names and derived (one ``.dlq``, ``.retry`` or ``.repartition``) names.
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
    if not _NAME_CHARS.fullmatch(name):
        bad = "".join(sorted({c for c in name if not _NAME_CHARS.fullmatch(c)}))
        raise TopicNameError(name, "charset", f"character(s) {bad!r} not allowed; only a-z, 0-9, '-' and '.' as separator")
    parts = name.split(".")
    if any(p == "" for p in parts):
        raise TopicNameError(name, "empty-segment", "a segment is empty (leading, trailing or doubled '.')")
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            raise TopicNameError(name, "hyphen-inside", f"'-' may only appear inside a segment, not start or end {part!r}")
    if parts[-1] in DERIVED_SUFFIXES:
        parts = parts[:-1]
    if len(parts) < 4:
        raise TopicNameError(name, "shape",
                             "expected [<prefix>.]<domain>.<dataset>.<stage>.v<N>[.dlq|.retry|.repartition]")
    version = parts[-1]
    if not _VERSION.fullmatch(version):
        if parts[-1] in DERIVED_SUFFIXES:
            raise TopicNameError(name, "shape", "only one .dlq, .retry or .repartition suffix is allowed")
        raise TopicNameError(name, "version",
                             f"the last segment {version!r} must be v<N> with N a positive integer without leading zero")
    if parts[-2] not in STAGES:
        raise TopicNameError(name, "stage", f"unknown stage {parts[-2]!r}; use one of {', '.join(STAGES)}")


def check_topic_names(names: Iterable[str]) -> tuple[NameCheck, ...]:
    """Return one :class:`NameCheck` per name, in order (for ``streamlake topics check``)."""
    verdicts = []
    for name in names:
        try:
            validate_topic_name(name)
        except TopicNameError as exc:
            verdicts.append(NameCheck(name, exc.rule, exc.why))
        else:
            verdicts.append(NameCheck(name))
    return tuple(verdicts)


def parse_topic_name(name: str) -> TopicName:
    """Parse a source (non-derived) physical name back into its parts."""
    validate_topic_name(name)
    parts = name.split(".")
    if parts[-1] in DERIVED_SUFFIXES:
        raise TopicNameError(name, "shape", "this is a derived (.dlq/.retry/.repartition) name, not a source topic")
    *head, domain, dataset, stage, version = parts
    return TopicName(domain, dataset, stage, int(version[1:]), ".".join(head))


def dlq_topic_for(source: TopicName | str) -> str:
    """Return the DLQ topic of *source*: ``<source>.dlq``."""
    return _derived(source, "dlq")


def retry_topic_for(source: TopicName | str) -> str:
    """Return the retry topic of *source*: ``<source>.retry``."""
    return _derived(source, "retry")


def repartition_topic_for(source: TopicName | str) -> str:
    """Return the internal topic through which *source*'s records reach their key's partition.

    ``<source>.repartition``: a record read on another partition than its key's
    is written here, to the key's partition, and sequenced when read back.
    """
    return _derived(source, "repartition")


def _derived(source: TopicName | str, suffix: str) -> str:
    source = str(source)
    parse_topic_name(source)  # only a source topic has a DLQ or retry topic
    name = f"{source}.{suffix}"
    validate_topic_name(name)
    return name


def source_of_derived(name: str) -> str:
    """Return the source topic of a ``.dlq``, ``.retry`` or ``.repartition`` name."""
    validate_topic_name(name)
    head, _, suffix = name.rpartition(".")
    if suffix not in DERIVED_SUFFIXES:
        raise TopicNameError(name, "shape", "not a derived (.dlq/.retry/.repartition) topic name")
    return head


def table_name_for(source: TopicName | str, purpose: str = "seq") -> str:
    """Return the name of the Faust table that keeps *purpose* state for *source*."""
    return f"{source}.{purpose}"


def changelog_topic_for(app_id: str, table: str) -> str:
    """Return Faust's changelog topic for *table*: ``<app id>-<table>-changelog``.

    Faust builds this name itself; it is checked against Kafka's own rules
    (not StreamLake's convention) so a bad app id fails before Faust starts.
    """
    name = f"{app_id}-{table}-changelog"
    if len(name) > MAX_TOPIC_LENGTH:
        raise TopicNameError(name, "length", f"{len(name)} characters; Kafka allows at most {MAX_TOPIC_LENGTH}; "
                             "shorten the app id or the table name")
    if not _KAFKA_LEGAL.fullmatch(name):
        raise TopicNameError(name, "charset", "Kafka allows only a-z, A-Z, 0-9, '.', '_' and '-'; fix the app id")
    return name


def consumer_group_for(app_id: str) -> str:
    """Return the consumer group: Faust uses the app id as the group id."""
    return app_id


#: A redrive or replay id: it becomes part of a consumer group name.
_RUN_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


def redrive_group_for(redrive_id: str, app_id: str = "streamlake") -> str:
    """Return the consumer group that checkpoints redrive *redrive_id*: ``<app id>-redrive-<id>``.

    Its committed offsets on the DLQ topic say how far the redrive got, so a
    rerun with the same id resumes there.

    Raises:
        TopicNameError: when the id is not 1-64 of a-z, 0-9 and inner '-'.
    """
    return _run_group(app_id, "redrive", redrive_id, "fix-1234")


def replay_group_for(replay_id: str, app_id: str = "streamlake") -> str:
    """Return the consumer group that records a finished window replay: ``<app id>-replay-<id>``.

    Its committed offsets on the replayed topic are the window's stop offsets,
    written once every copy was acknowledged, so a rerun with the same id knows
    the window was already replayed. Same id rules as :func:`redrive_group_for`.
    """
    return _run_group(app_id, "replay", replay_id, "backfill-20240501")


def _run_group(app_id: str, kind: str, run_id: str, example: str) -> str:
    """``<app id>-<kind>-<run id>``, the group of one named redrive or replay run."""
    if not _RUN_ID.fullmatch(run_id):
        raise TopicNameError(run_id, f"{kind}-id", f"a {kind} id is 1-64 characters of a-z, 0-9 and '-' "
                             f"(not at the start or end), e.g. '{example}'")
    group = f"{app_id}-{kind}-{run_id}"
    if not _KAFKA_LEGAL.fullmatch(group) or len(group) > MAX_TOPIC_LENGTH:
        raise TopicNameError(group, "charset", "the app id makes an invalid group name; fix the app id")
    return group


def metric_name_of(topic: str) -> str:
    """Return the form Kafka's metrics give *topic* ('.' becomes '_')."""
    return topic.replace(".", "_")


def find_metric_collisions(names: Iterable[str]) -> list[tuple[str, ...]]:
    """Return groups of distinct names that map to the same metric name."""
    seen: dict[str, set[str]] = {}
    for name in names:
        seen.setdefault(metric_name_of(name), set()).add(name)
    return [tuple(sorted(group)) for group in seen.values() if len(group) > 1]


#: How a stream's topic maps to its lake table (documented in docs/LAKE.md and docs/TOPICS.md).
LAKE_IDENTIFIER_RULE = ("namespace = [<prefix segments>.]<domain>, table = <dataset>_v<N>; '-' becomes '_' "
                        "so that every SQL engine takes the identifier unquoted")


def lake_table_identifier(topic: TopicName | str) -> tuple[str, ...]:
    """Return the Iceberg identifier of the table a topic lands in.

    ``sales.orders.valid.v1`` -> ``("sales", "orders_v1")``; with a topic prefix, each prefix
    segment is an outer namespace level: ``prod.sales.order-lines.valid.v2`` ->
    ``("prod", "sales", "order_lines_v2")``. The stage is not part of it: one table per stream.
    Topic segments never hold ``_`` (rule no-underscore), so the mapping cannot collide.
    """
    name = parse_topic_name(str(topic)) if not isinstance(topic, TopicName) else topic
    namespace = [part.replace("-", "_") for part in name.prefix.split(".")] if name.prefix else []
    namespace.append(name.domain.replace("-", "_"))
    return (*namespace, f"{name.dataset.replace('-', '_')}_v{name.version}")


def lake_identifier_warnings(identifier: tuple[str, ...]) -> list[str]:
    """What makes a lake identifier awkward (not invalid) in SQL engines: a level starting with a digit."""
    return [f"{'.'.join(identifier)}: {level!r} starts with a digit, so Trino, Spark and DuckDB need it quoted "
            f"(\"{level}\"); a domain or prefix that starts with a letter avoids that"
            for level in identifier if level[:1].isdigit()]
