"""Records of a ``valid`` topic to lake rows: decode, cast each declared field, keep the rest as JSON.

Invariants:
- A record becomes exactly one row, or one :class:`LandingFailure` (it then goes to the
  landing DLQ with its reason); nothing raises out of :meth:`RowBuilder.build`.
- Nothing is lost: fields that are not declared columns land in ``_extra`` as a JSON
  object; a field that does not cast to its declared type fails the record rather
  than being nulled.
- Values are what pyarrow takes for the column type: timestamps as microseconds since
  the epoch, dates as days since the epoch, decimals as :class:`decimal.Decimal`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .dlq import Reason
from .lake_progress import RecentWindow
from .lake_schema import FIXED_COLUMNS, ColumnType, TypeKind
from .records import ConsumedRecord, header_of

__all__ = ["CastError", "cast_value", "LandingFailure", "RowBuilder", "ColumnBuffer", "DEFAULT_MAX_FIELD_BYTES",
           "Built"]

DEFAULT_MAX_FIELD_BYTES = 1024 * 1024  # a string column or _extra larger than this goes to the landing DLQ
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DATE = dt.date(1970, 1, 1)
_INT32 = 2**31
_INT64 = 2**63


class CastError(ValueError):
    """A value that does not fit its declared column type."""


def _cast_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise CastError(f"expected a string, got {type(value).__name__}")


def _integer(value: Any, bound: int, name: str) -> int:
    if isinstance(value, bool):
        raise CastError(f"expected {name}, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    else:
        raise CastError(f"expected {name}, got {value!r:.60}")
    if not -bound <= number < bound:
        raise CastError(f"{number} is out of range for {name}")
    return number


def _cast_int(value: Any) -> int:
    return _integer(value, _INT32, "an int (32-bit)")


def _cast_long(value: Any) -> int:
    return _integer(value, _INT64, "a long (64-bit)")


def _cast_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CastError("expected a number, got a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise CastError(f"expected a number, got {value!r:.60}")


def _cast_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise CastError(f"expected true or false, got {value!r:.60}")


def _epoch_micros(value: Any, aware: bool) -> int:
    """Epoch milliseconds (a JSON number) or ISO-8601 text to microseconds since the epoch (UTC)."""
    if isinstance(value, bool):
        raise CastError("expected a timestamp, got a boolean")
    if isinstance(value, (int, float)):
        micros = int(value * 1000)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise CastError(f"expected an ISO-8601 timestamp or epoch milliseconds, got {value!r:.60}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        delta = moment - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    else:
        raise CastError(f"expected a timestamp, got {type(value).__name__}")
    if not -_INT64 <= micros < _INT64:
        raise CastError(f"timestamp {value!r} is out of range")
    return micros


def _cast_date(value: Any) -> int:
    if isinstance(value, str):
        try:
            return (dt.date.fromisoformat(value) - _EPOCH_DATE).days
        except ValueError:
            raise CastError(f"expected a date YYYY-MM-DD, got {value!r:.60}") from None
    return _integer(value, _INT32, "a date (days since 1970-01-01)")


def _decimal_caster(precision: int, scale: int) -> Callable[[Any], decimal.Decimal]:
    quantum = decimal.Decimal(1).scaleb(-scale)
    limit = decimal.Decimal(10) ** (precision - scale)
    context = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])

    def cast(value: Any) -> decimal.Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise CastError(f"expected a decimal number, got {type(value).__name__}")
        try:
            number = decimal.Decimal(str(value) if isinstance(value, float) else value)
            exact = number.quantize(quantum, context=context)  # Inexact: it has more decimals than the scale
        except (decimal.InvalidOperation, decimal.Inexact):
            raise CastError(f"{value!r:.60} is not a decimal({precision},{scale})") from None
        if not exact.is_finite() or abs(exact) >= limit:
            raise CastError(f"{value!r:.60} does not fit decimal({precision},{scale})")
        return exact

    return cast


def caster_for(ctype: ColumnType) -> Callable[[Any], Any]:
    """The function that casts a decoded JSON value to *ctype* (raises :class:`CastError`)."""
    kind = ctype.kind
    if kind is TypeKind.DECIMAL:
        return _decimal_caster(ctype.precision, ctype.scale)
    if kind in (TypeKind.TIMESTAMP, TypeKind.TIMESTAMPTZ):
        aware = kind is TypeKind.TIMESTAMPTZ
        return lambda value: _epoch_micros(value, aware)
    return {
        TypeKind.STRING: _cast_string, TypeKind.INT: _cast_int, TypeKind.LONG: _cast_long,
        TypeKind.FLOAT: _cast_float, TypeKind.DOUBLE: _cast_float, TypeKind.BOOLEAN: _cast_boolean,
        TypeKind.DATE: _cast_date,
    }[kind]


def cast_value(ctype: ColumnType, value: Any) -> Any:
    """Cast one decoded JSON value; None stays None."""
    return None if value is None else caster_for(ctype)(value)


class Built(enum.Enum):
    """A record that did not fail: it became a row, or it repeats a ``(key, seq)`` already landed."""

    ROW = "row"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class LandingFailure:
    """Why a record cannot become a row."""

    record: ConsumedRecord
    reason: Reason
    message: str


class ColumnBuffer:
    """Rows of one table as one list per column, in the table's column order."""

    __slots__ = ("names", "columns", "size", "event_time_max")

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.columns: list[list[Any]] = [[] for _ in names]
        self.size = 0
        self.event_time_max: int | None = None

    def __len__(self) -> int:
        return len(self.columns[0])

    def as_dict(self) -> dict[str, list[Any]]:
        return dict(zip(self.names, self.columns, strict=True))


class RowBuilder:
    """Turns records of one stream into rows of its table.

    Args:
        declared: the stream's declared columns (name -> type), in table order.
        sequence_field / sequence_header: where ``_seq`` comes from (one of them).
        event_time_field: a declared timestamp column whose maximum is tracked, or None.
        max_field_bytes: the largest string value (and ``_extra``) a row may carry.
    """

    def __init__(self, declared: Mapping[str, ColumnType], sequence_field: str | None,
                 sequence_header: str | None, event_time_field: str | None = None,
                 max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> None:
        self.declared = dict(declared)
        self.casters = [(name, caster_for(ctype), ctype.kind is TypeKind.STRING) for name, ctype in declared.items()]
        self.sequence_field = sequence_field
        self.sequence_header = sequence_header
        names = list(declared)
        self.event_index = names.index(event_time_field) if event_time_field and event_time_field in names else None
        self.max_field_bytes = max_field_bytes
        self.names = tuple(c.name for c in FIXED_COLUMNS) + tuple(declared)

    def new_buffer(self) -> ColumnBuffer:
        return ColumnBuffer(self.names)

    def build(self, record: ConsumedRecord, landed_at_us: int, out: ColumnBuffer,
              recent: RecentWindow) -> LandingFailure | Built:
        """Append *record*'s row to *out* (and its ``(key, seq)`` to *recent*), or say why not.

        A ``(key, seq)`` already in *recent* is a duplicate forwarded by ingestion: no row.
        """
        if not record.key:
            return LandingFailure(record, Reason.LAND_MISSING_IDENTITY, "the record has no key")
        try:
            key = record.key.decode()
        except UnicodeDecodeError:
            return LandingFailure(record, Reason.LAND_UNDECODABLE, "the record key is not UTF-8")
        try:
            doc = orjson.loads(record.value or b"")
        except orjson.JSONDecodeError as exc:
            return LandingFailure(record, Reason.LAND_UNDECODABLE, f"the value is not JSON: {exc}")
        if not isinstance(doc, dict):
            return LandingFailure(record, Reason.LAND_UNDECODABLE, f"the value is a JSON {type(doc).__name__}, "
                                                                   "not an object")
        seq = self._sequence(record, doc)
        if isinstance(seq, LandingFailure):
            return seq
        if (key, seq) in recent:
            return Built.DUPLICATE
        values: list[Any] = []
        limit = self.max_field_bytes
        for name, cast, is_string in self.casters:
            raw = doc.pop(name, None)
            if raw is None:
                values.append(None)
                continue
            try:
                value = cast(raw)
            except CastError as exc:
                return LandingFailure(record, Reason.LAND_CAST_FAILED,
                                      f"field {name!r} ({self.declared[name]}): {exc}")
            if is_string and len(value) > limit // 4 and len(value.encode()) > limit:
                return LandingFailure(record, Reason.LAND_FIELD_TOO_LARGE,
                                      f"field {name!r} has {len(value.encode())} bytes; the limit is {limit}")
            values.append(value)
        extra = orjson.dumps(doc).decode() if doc else None
        if extra is not None and len(extra) > limit // 4 and len(extra.encode()) > limit:
            return LandingFailure(record, Reason.LAND_FIELD_TOO_LARGE,
                                  f"the undeclared fields (_extra) have {len(extra.encode())} bytes; "
                                  f"the limit is {limit}")
        cols = out.columns
        for column, value in zip(cols, (key, seq, record.partition, record.offset, record.timestamp * 1000,
                                        landed_at_us, extra, *values), strict=True):
            column.append(value)
        out.size += len(record.value or b"") + len(record.key)
        if self.event_index is not None:
            moment = values[self.event_index]
            if moment is not None and (out.event_time_max is None or moment > out.event_time_max):
                out.event_time_max = moment
        recent.add(key, seq, record.offset)
        return Built.ROW

    def _sequence(self, record: ConsumedRecord, doc: dict[str, Any]) -> int | LandingFailure:
        if self.sequence_header:
            raw_header = header_of(record, self.sequence_header)
            raw: Any = raw_header.decode("ascii", "replace") if raw_header is not None else None
        else:
            raw = doc.get(self.sequence_field or "")
        if raw is None:
            return LandingFailure(record, Reason.LAND_MISSING_IDENTITY, "the record has no sequence number")
        try:
            return _cast_long(raw)
        except CastError as exc:
            return LandingFailure(record, Reason.LAND_MISSING_IDENTITY, f"the sequence number is unusable: {exc}")
