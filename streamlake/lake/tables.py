"""Iceberg tables of the streams: catalog access, creation, schema evolution, landed offsets.

Invariants:
- one table per stream, at :func:`streamlake.naming.lake_table_identifier` of its output topic;
- every table StreamLake creates or lands in has ``commit.retry.num-retries=0``: pyiceberg's
  own retry re-applies a stale append on top of a newer snapshot without re-checking
  offsets, which lands a batch twice;
- a declared type change Iceberg cannot promote is refused (:class:`LakeSchemaError`), never
  forced; added columns are added with ``update_schema``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy.exc
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.partitioning import PartitionField as IcebergPartitionField
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.transforms import (
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    YearTransform,
)
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from ..core.lake_progress import EVENT_TIME_PROPERTY, TopicPartition, offsets_from_ancestry
from ..core.lake_schema import (
    Column,
    ColumnType,
    PartitionField,
    PartitionTransform,
    TypeKind,
    plan_schema_change,
    table_columns,
)
from ..errors import StreamLakeError
from ..naming import lake_table_identifier
from ..topology import Stream
from .settings import LakeSettings

__all__ = [
    "LakeError", "LakeSchemaError", "LakeTarget", "open_catalog", "target_for", "ensure_table", "load_table",
    "table_offsets_of", "event_time_max_of", "iceberg_type", "TABLE_PROPERTIES", "arrow_schema_for",
]

#: Required on every table StreamLake lands in: checked (and set) whenever a lander opens one.
TABLE_PROPERTIES = {"commit.retry.num-retries": "0"}
#: Set when StreamLake creates a table: bounded metadata (merged manifests, old metadata files
#: deleted) keeps commit latency flat; an operator may change them later.
TABLE_DEFAULTS = {
    "write.parquet.compression-codec": "zstd",
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


class LakeError(StreamLakeError):
    """The lake (catalog, warehouse or a table) cannot do what was asked."""


class LakeSchemaError(LakeError):
    """A declared column cannot be applied to the existing table."""


@dataclass(frozen=True)
class LakeTarget:
    """A stream, the topic it lands from and the table it lands in."""

    stream: Stream
    topic: str
    identifier: tuple[str, ...]

    @property
    def name(self) -> str:
        """``sales.orders_v1``: the identifier as SQL writes it."""
        return ".".join(self.identifier)


def target_for(stream: Stream, prefix: str) -> LakeTarget:
    topic = stream.output_topic(prefix)
    return LakeTarget(stream, str(topic), lake_table_identifier(topic))


def open_catalog(lake: LakeSettings) -> Catalog:
    """The configured pyiceberg catalog (credentials from the environment are passed, never logged)."""
    for attempt in range(3):
        try:
            return load_catalog(lake.catalog_name, **lake.catalog_properties())
        except sqlalchemy.exc.OperationalError as exc:
            # Processes starting together (landers) each create a new SQL catalog's tables;
            # the one that loses the race sees "already exists", and opening again finds them.
            if attempt < 2 and "already exists" in str(exc):
                continue
            raise _catalog_error(lake, exc) from exc
        except Exception as exc:  # pyiceberg raises many types here; say which catalog failed
            raise _catalog_error(lake, exc) from exc
    raise AssertionError("unreachable: the last attempt returns or raises")


def _catalog_error(lake: LakeSettings, exc: Exception) -> LakeError:
    return LakeError(f"cannot open the {lake.catalog_type} lake catalog ({lake!r}): {type(exc).__name__}: "
                     f"{exc}; check [lake] in conf or STREAMLAKE_LAKE_CATALOG_URI/_WAREHOUSE")


_ICEBERG_TYPES: dict[TypeKind, IcebergType] = {
    TypeKind.STRING: StringType(), TypeKind.INT: IntegerType(), TypeKind.LONG: LongType(),
    TypeKind.FLOAT: FloatType(), TypeKind.DOUBLE: DoubleType(), TypeKind.BOOLEAN: BooleanType(),
    TypeKind.DATE: DateType(), TypeKind.TIMESTAMP: TimestampType(), TypeKind.TIMESTAMPTZ: TimestamptzType(),
}


def iceberg_type(ctype: ColumnType) -> IcebergType:
    if ctype.kind is TypeKind.DECIMAL:
        return DecimalType(ctype.precision, ctype.scale)
    return _ICEBERG_TYPES[ctype.kind]


def _column_type(itype: IcebergType) -> ColumnType | None:
    if isinstance(itype, DecimalType):
        return ColumnType(TypeKind.DECIMAL, itype.precision, itype.scale)
    for kind, known in _ICEBERG_TYPES.items():
        if itype == known:
            return ColumnType(kind)
    return None


def _schema(columns: tuple[Column, ...]) -> Schema:
    return Schema(*(NestedField(i, c.name, iceberg_type(c.type), required=c.required)
                    for i, c in enumerate(columns, start=1)))


_TRANSFORMS: dict[PartitionTransform, Transform[Any, Any]] = {
    PartitionTransform.YEAR: YearTransform(), PartitionTransform.MONTH: MonthTransform(),
    PartitionTransform.DAY: DayTransform(), PartitionTransform.HOUR: HourTransform(),
    PartitionTransform.IDENTITY: IdentityTransform(),
}


def _partition_spec(schema: Schema, fields: tuple[PartitionField, ...]) -> PartitionSpec:
    return PartitionSpec(*(
        IcebergPartitionField(source_id=schema.find_field(pf.column).field_id, field_id=1000 + i,
                              transform=_TRANSFORMS[pf.transform], name=pf.name)
        for i, pf in enumerate(fields)))


def arrow_schema_for(stream: Stream) -> pa.Schema:
    """The arrow schema of the rows a lander builds for *stream* (fixed then declared columns)."""
    return _schema(table_columns(stream.lake_columns)).as_arrow()


def _ensure_namespace(catalog: Catalog, identifier: tuple[str, ...]) -> None:
    namespace = identifier[:-1]
    for depth in range(1, len(namespace) + 1):
        level = namespace[:depth]
        try:
            catalog.create_namespace_if_not_exists(level)
        except Exception:  # landers starting together race to create it (SQLite says IntegrityError)
            if not catalog.namespace_exists(level):
                raise


def ensure_table(catalog: Catalog, target: LakeTarget) -> Table:
    """Create the stream's table, or evolve it to the declaration; return it.

    Raises:
        LakeSchemaError: a declared type change Iceberg cannot promote, with what to do.
    """
    columns = table_columns(target.stream.lake_columns)
    _ensure_namespace(catalog, target.identifier)
    try:
        table = catalog.load_table(target.identifier)
    except NoSuchTableError:
        schema = _schema(columns)
        try:
            return catalog.create_table(
                target.identifier, schema=schema,
                partition_spec=_partition_spec(schema, target.stream.lake_partition_spec),
                properties={**TABLE_DEFAULTS, **TABLE_PROPERTIES, "streamlake.topic": target.topic,
                            "streamlake.stream": target.stream.name})
        except Exception:  # another lander created it first (TableAlreadyExistsError, or the catalog's own error)
            if not catalog.table_exists(target.identifier):
                raise
            table = catalog.load_table(target.identifier)
    return _evolve(table, columns, target)


def _evolve(table: Table, columns: tuple[Column, ...], target: LakeTarget) -> Table:
    for _attempt in range(10):
        existing = {f.name: t for f in table.schema().fields if (t := _column_type(f.field_type)) is not None}
        change = plan_schema_change(existing, columns, target.name)
        if change.refused:
            raise LakeSchemaError("; ".join(change.refused))
        missing = {k: v for k, v in TABLE_PROPERTIES.items() if table.properties.get(k) != v}
        if not change.needed and not missing:
            return table
        try:
            if change.needed:
                with table.update_schema() as update:
                    for column in change.add:
                        update.add_column(column.name, iceberg_type(column.type))
                    for column in change.promote:
                        update.update_column(column.name, field_type=iceberg_type(column.type))
            if missing:
                with table.transaction() as tx:
                    tx.set_properties(missing)
        except CommitFailedException:
            pass  # a concurrent lander changed it: look again
        table = table.refresh()
    raise LakeError(f"{target.name}: could not apply the schema change after 10 attempts (concurrent changes)")


def load_table(catalog: Catalog, target: LakeTarget) -> Table:
    try:
        return catalog.load_table(target.identifier)
    except NoSuchTableError:
        raise LakeError(f"no lake table {target.name} yet: start a lander (`streamlake land`) to create it") from None


def _summaries(table: Table) -> Iterator[dict[str, str]]:
    current = table.current_snapshot()
    if current is None:
        return
    for snapshot in ancestors_of(current, table.metadata):
        yield dict(snapshot.summary.additional_properties) if snapshot.summary else {}


def table_offsets_of(table: Table) -> dict[TopicPartition, int]:
    """The next offset to land per topic-partition, from the newest snapshot that records them."""
    return offsets_from_ancestry(_summaries(table))


def event_time_max_of(table: Table) -> int | None:
    """The newest event time landed (microseconds since the epoch), or None."""
    for summary in _summaries(table):
        if EVENT_TIME_PROPERTY in summary:
            return int(summary[EVENT_TIME_PROPERTY])
    return None
