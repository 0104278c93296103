"""Stream declarations and their discovery under ``topologies/``.

A topology module declares one or more :class:`Stream` objects at module
level; :func:`discover_streams` imports every module in the folder and
collects them, so no registration list is needed.
"""

from __future__ import annotations

import enum
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.lake_schema import (
    ColumnType,
    PartitionField,
    check_partition_spec,
    default_partition_spec,
    parse_column_type,
    parse_partition_field,
    table_columns,
)
from .errors import TopologyError
from .naming import TopicName, dlq_topic_for, repartition_topic_for, retry_topic_for, topic_name, validate_segment

__all__ = ["Action", "Partitioning", "Policies", "Stream", "discover_streams", "Transform"]

#: A user transform takes the decoded value and returns the value to forward
#: (a dict), or raises. ``RetryableError`` marks the failure as transient.
Transform = Callable[[dict[str, Any]], dict[str, Any]]

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "object": (dict,), "array": (list,),
}


class Action(enum.Enum):
    """What happens to a record of an ordering class."""

    FORWARD = "forward"
    DROP = "drop"
    DLQ = "dlq"


class Partitioning(enum.Enum):
    """What happens to a record that arrives on another partition than its key's (Java murmur2) one.

    ``REPARTITION`` (default): it is written to the internal topic
    ``<source>.repartition`` at its key's partition and sequenced when read back
    there, so producers with another partitioner (librdkafka's default) lose
    nothing. ``STRICT``: it goes to the DLQ as ``wrong-partition``.
    """

    REPARTITION = "repartition"
    STRICT = "strict"


@dataclass(frozen=True)
class Policies:
    """One action per ordering class (DESIGN defaults)."""

    in_order: Action = Action.FORWARD
    gap: Action = Action.FORWARD
    duplicate: Action = Action.DROP
    late: Action = Action.DLQ


@dataclass(frozen=True)
class Stream:
    """A keyed ingestion stream: ``<domain>.<dataset>`` read from its raw topic.

    Attributes:
        domain, dataset, version: the logical identity; the catalog makes it physical.
        key_field: value field whose UTF-8 bytes must equal the record key.
        sequence_field: value field holding the per-key sequence number, or
        sequence_header: a record header holding it as ASCII digits instead.
        required_fields: extra field name -> JSON type name ("string", "integer",
            "number", "boolean", "object", "array") that every value must carry.
        policies: the action for each ordering class.
        transform: optional enrichment; raise to send the record to the DLQ.
        source_stage / output_stage: stage words of the input and output topics.
        columns: lake columns, field name -> Iceberg type ("string", "int", "long", "float",
            "double", "boolean", "date", "timestamp", "timestamptz", "decimal(P,S)"); fields
            not declared land in the table's ``_extra`` JSON column.
        event_time_field: a declared date/timestamp column holding the event time; the table
            is partitioned by its day and freshness is its newest value.
        partition_by: partition fields such as ``("day(ts)",)``; default ``day(<event time>)``,
            or ``day(_kafka_timestamp)`` without an event time. Never identity of the key.
        partitioning: what happens to a record on another partition than its key's
            (see :class:`Partitioning`).
    """

    domain: str
    dataset: str
    key_field: str
    version: int = 1
    sequence_field: str | None = "seq"
    sequence_header: str | None = None
    required_fields: Mapping[str, str] = field(default_factory=dict)
    policies: Policies = Policies()
    transform: Transform | None = None
    source_stage: str = "raw"
    output_stage: str = "valid"
    columns: Mapping[str, str] = field(default_factory=dict)
    event_time_field: str | None = None
    partition_by: tuple[str, ...] | None = None
    partitioning: Partitioning = Partitioning.REPARTITION

    def __post_init__(self) -> None:
        validate_segment(self.domain, "domain")
        validate_segment(self.dataset, "dataset")
        if not self.key_field:
            raise TopologyError(f"stream {self.name}: key_field must be set")
        if not isinstance(self.partitioning, Partitioning):
            raise TopologyError(f"stream {self.name}: partitioning must be Partitioning.REPARTITION or "
                                f"Partitioning.STRICT, got {self.partitioning!r}")
        if bool(self.sequence_field) == bool(self.sequence_header):
            raise TopologyError(f"stream {self.name}: set exactly one of sequence_field or sequence_header")
        for fname, tname in self.required_fields.items():
            if tname not in JSON_TYPES:
                raise TopologyError(
                    f"stream {self.name}: field {fname!r} has unknown type {tname!r}; use one of {', '.join(JSON_TYPES)}")
        where = f"stream {self.name}"
        declared = self.lake_columns
        columns = table_columns(declared)
        if self.event_time_field is not None:
            event_type = declared.get(self.event_time_field)
            if event_type is None or not event_type.is_time:
                raise TopologyError(f"{where}: event_time_field {self.event_time_field!r} must be a declared "
                                    "date, timestamp or timestamptz column")
        check_partition_spec(self.lake_partition_spec, columns, self.key_field, where)

    @property
    def lake_columns(self) -> dict[str, ColumnType]:
        """The declared lake columns, parsed (name -> type), in declaration order."""
        return {name: parse_column_type(spec, f"stream {self.name}: column {name!r}")
                for name, spec in self.columns.items()}

    @property
    def lake_partition_spec(self) -> tuple[PartitionField, ...]:
        """The declared partition fields, or the default day() of the event time."""
        if self.partition_by is None:
            return default_partition_spec(self.event_time_field)
        return tuple(parse_partition_field(spec, f"stream {self.name}: partition_by") for spec in self.partition_by)

    @property
    def name(self) -> str:
        """The logical name, ``<domain>.<dataset>``, used by the catalog and CLI."""
        return f"{self.domain}.{self.dataset}"

    def source_topic(self, prefix: str = "") -> TopicName:
        return topic_name(self.domain, self.dataset, self.source_stage, self.version, prefix)

    def output_topic(self, prefix: str = "") -> TopicName:
        return topic_name(self.domain, self.dataset, self.output_stage, self.version, prefix)

    def dlq_topic(self, prefix: str = "") -> str:
        return dlq_topic_for(self.source_topic(prefix))

    def retry_topic(self, prefix: str = "") -> str:
        return retry_topic_for(self.source_topic(prefix))

    def repartition_topic(self, prefix: str = "") -> str:
        return repartition_topic_for(self.source_topic(prefix))


def discover_streams(folder: Path) -> list[Stream]:
    """Import every ``*.py`` under *folder* and return the Streams they declare."""
    if not folder.is_dir():
        raise TopologyError(f"no topologies folder at {folder}; create it and declare a Stream there")
    streams: dict[str, Stream] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        module = _import(path)
        for value in vars(module).values():
            if isinstance(value, Stream):
                other = streams.get(value.name)
                if other is not None and other is not value:
                    raise TopologyError(f"stream {value.name} is declared twice (again in {path})")
                streams[value.name] = value
    return list(streams.values())


def _import(path: Path) -> Any:
    name = f"streamlake_topologies.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TopologyError(f"cannot import topology module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise TopologyError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module
