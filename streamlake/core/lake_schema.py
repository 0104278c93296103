"""Lake table shape rules: declared column types, the fixed columns, partition specs, schema changes.

Invariants:
- every lake table has the :data:`FIXED_COLUMNS` first, then the stream's declared columns;
- a partition spec never uses identity(key): one file per key per day is the tiny-file trap;
- a declared type change is applied only when Iceberg can promote it (int->long,
  float->double, decimal precision widening at the same scale); anything else is refused
  with a message that says what to do.

Pure: type specs are text (``"decimal(12,2)"``, ``"timestamp"``); :mod:`streamlake.lake`
turns them into pyiceberg and pyarrow types.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import TopologyError

__all__ = [
    "TypeKind", "ColumnType", "parse_column_type", "Column", "FIXED_COLUMNS", "FIXED_COLUMN_NAMES",
    "KAFKA_TIMESTAMP_COLUMN", "PartitionField", "PartitionTransform", "parse_partition_field",
    "default_partition_spec", "check_partition_spec", "table_columns", "can_promote", "SchemaChange",
    "plan_schema_change",
]


class TypeKind(enum.Enum):
    """The column types a stream may declare (Iceberg primitive types)."""

    STRING = "string"
    INT = "int"
    LONG = "long"
    FLOAT = "float"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"      # without zone; epoch ms or ISO-8601 in the value
    TIMESTAMPTZ = "timestamptz"  # UTC-adjusted
    DECIMAL = "decimal"


@dataclass(frozen=True)
class ColumnType:
    """A declared type; ``precision``/``scale`` only for decimals."""

    kind: TypeKind
    precision: int = 0
    scale: int = 0

    def __str__(self) -> str:
        if self.kind is TypeKind.DECIMAL:
            return f"decimal({self.precision},{self.scale})"
        return self.kind.value

    @property
    def is_time(self) -> bool:
        return self.kind in (TypeKind.DATE, TypeKind.TIMESTAMP, TypeKind.TIMESTAMPTZ)


_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_ALIASES = {"integer": "int", "bigint": "long", "bool": "boolean", "str": "string", "float64": "double",
            "float32": "float", "int64": "long", "int32": "int"}


def parse_column_type(spec: str, where: str = "column") -> ColumnType:
    """Parse a type spec such as ``"long"`` or ``"decimal(12,2)"``.

    Raises:
        TopologyError: naming the spec and the accepted ones.
    """
    text = str(spec).strip().lower()
    text = _ALIASES.get(text, text)
    match = _DECIMAL.fullmatch(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise TopologyError(f"{where}: {spec!r} needs 1 <= precision <= 38 and scale <= precision")
        return ColumnType(TypeKind.DECIMAL, precision, scale)
    try:
        kind = TypeKind(text)
    except ValueError:
        accepted = ", ".join(k.value for k in TypeKind if k is not TypeKind.DECIMAL)
        raise TopologyError(f"{where}: unknown type {spec!r}; use one of {accepted} or decimal(P,S)") from None
    if kind is TypeKind.DECIMAL:
        raise TopologyError(f"{where}: decimal needs its precision and scale, e.g. decimal(12,2)")
    return ColumnType(kind)


@dataclass(frozen=True)
class Column:
    """One table column: name, type, and whether it is always set."""

    name: str
    type: ColumnType
    required: bool = False


KAFKA_TIMESTAMP_COLUMN = "_kafka_timestamp"

#: Columns every lake table has, in this order, before the declared ones.
FIXED_COLUMNS: tuple[Column, ...] = (
    Column("_key", ColumnType(TypeKind.STRING), required=True),
    Column("_seq", ColumnType(TypeKind.LONG), required=True),
    Column("_kafka_partition", ColumnType(TypeKind.INT), required=True),
    Column("_kafka_offset", ColumnType(TypeKind.LONG), required=True),
    Column(KAFKA_TIMESTAMP_COLUMN, ColumnType(TypeKind.TIMESTAMPTZ), required=True),
    Column("_landed_at", ColumnType(TypeKind.TIMESTAMPTZ), required=True),
    Column("_extra", ColumnType(TypeKind.STRING)),  # undeclared fields as a JSON object; null when none
)
FIXED_COLUMN_NAMES = frozenset(c.name for c in FIXED_COLUMNS)


def table_columns(declared: Mapping[str, ColumnType]) -> tuple[Column, ...]:
    """The fixed columns followed by the declared ones (declaration order)."""
    clash = sorted(set(declared) & FIXED_COLUMN_NAMES)
    if clash:
        raise TopologyError(f"declared column(s) {', '.join(clash)} clash with the fixed lake columns; rename them")
    return FIXED_COLUMNS + tuple(Column(name, ctype) for name, ctype in declared.items())


class PartitionTransform(enum.Enum):
    """Iceberg partition transforms StreamLake declares (time-based, or identity of a low-cardinality field)."""

    YEAR = "year"
    MONTH = "month"
    DAY = "day"
    HOUR = "hour"
    IDENTITY = "identity"


@dataclass(frozen=True)
class PartitionField:
    """``day(ts)`` and the like."""

    transform: PartitionTransform
    column: str

    def __str__(self) -> str:
        return f"{self.transform.value}({self.column})"

    @property
    def name(self) -> str:
        """The partition field name Iceberg shows (``ts_day``)."""
        return f"{self.column}_{self.transform.value}"


_PARTITION = re.compile(r"([a-z]+)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)")


def parse_partition_field(spec: str, where: str = "partition_by") -> PartitionField:
    """Parse ``"day(ts)"``; a bare column name means identity."""
    text = spec.strip()
    match = _PARTITION.fullmatch(text)
    if match is None:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
            return PartitionField(PartitionTransform.IDENTITY, text)
        raise TopologyError(f"{where}: {spec!r} is not a partition field; write e.g. 'day(ts)' or 'currency'")
    try:
        transform = PartitionTransform(match.group(1))
    except ValueError:
        names = ", ".join(t.value for t in PartitionTransform)
        raise TopologyError(f"{where}: unknown transform {match.group(1)!r} in {spec!r}; use one of {names}") from None
    return PartitionField(transform, match.group(2))


def default_partition_spec(event_time_field: str | None) -> tuple[PartitionField, ...]:
    """``day(<event time>)``, or ``day(_kafka_timestamp)`` when the stream has no event time field."""
    return (PartitionField(PartitionTransform.DAY, event_time_field or KAFKA_TIMESTAMP_COLUMN),)


def check_partition_spec(spec: Sequence[PartitionField], columns: Sequence[Column], key_field: str,
                         where: str) -> None:
    """Refuse a spec over unknown columns, time transforms of non-time columns, and identity of the key."""
    by_name = {c.name: c for c in columns}
    for pf in spec:
        column = by_name.get(pf.column)
        if column is None:
            raise TopologyError(f"{where}: partition field {pf} names no column; declare {pf.column!r} in columns")
        if pf.transform is PartitionTransform.IDENTITY:
            if pf.column in (key_field, "_key", "_seq", "_kafka_offset"):
                raise TopologyError(f"{where}: identity({pf.column}) would write one file per key or record; "
                                    "partition by day() of the event time instead")
        elif not column.type.is_time:
            raise TopologyError(f"{where}: {pf} needs a date or timestamp column, {pf.column!r} is {column.type}")
        elif pf.transform is PartitionTransform.HOUR and column.type.kind is TypeKind.DATE:
            raise TopologyError(f"{where}: hour() of the date column {pf.column!r} is impossible; use day()")


def can_promote(old: ColumnType, new: ColumnType) -> bool:
    """Whether Iceberg can change a column from *old* to *new* in place."""
    if old == new:
        return True
    if (old.kind, new.kind) in ((TypeKind.INT, TypeKind.LONG), (TypeKind.FLOAT, TypeKind.DOUBLE)):
        return True
    return (old.kind is TypeKind.DECIMAL and new.kind is TypeKind.DECIMAL and old.scale == new.scale
            and new.precision >= old.precision)


@dataclass(frozen=True)
class SchemaChange:
    """What landing a stream needs done to its table's schema."""

    add: tuple[Column, ...] = ()
    promote: tuple[Column, ...] = ()
    refused: tuple[str, ...] = ()  # one message per column that cannot change

    @property
    def needed(self) -> bool:
        return bool(self.add or self.promote)


def plan_schema_change(existing: Mapping[str, ColumnType], wanted: Sequence[Column], table: str) -> SchemaChange:
    """Compare the table's columns with the declaration.

    New declared columns are added; promotable type changes are promoted; other type
    changes are refused. A column the declaration dropped stays in the table (old
    rows keep it; new rows write null), as Iceberg readers expect.
    """
    add: list[Column] = []
    promote: list[Column] = []
    refused: list[str] = []
    for column in wanted:
        old = existing.get(column.name)
        if old is None:
            add.append(column)
        elif old != column.type:
            if can_promote(old, column.type):
                promote.append(column)
            else:
                refused.append(
                    f"{table}.{column.name} is {old} in the table but declared {column.type}; Iceberg cannot "
                    f"change {old} to {column.type} in place: declare a new column name (and keep "
                    f"{column.name!r} as {old}), or bump the stream's version to land in a new table")
    return SchemaChange(tuple(add), tuple(promote), tuple(refused))
