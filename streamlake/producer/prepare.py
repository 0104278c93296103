"""Turn one value into the record a stream accepts, or refuse it: pure, no Kafka client.

The record key is the UTF-8 of the stream's key field, the partition is the
Java client's default for that key, and the record then goes through the very
rules ingestion applies (:func:`streamlake.core.pipeline.admit_record`), so a
record this module accepts can only be dead-lettered downstream by its
ordering class or by the stream's transform (which runs in the workers only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from ..core.dlq import Reason
from ..core.pipeline import RecordRejected, admit_record
from ..core.records import Headers, SourceRecord
from ..partitioner import cached_partition_for_key
from ..topology import Stream
from .errors import ProducerError, RecordRefused

__all__ = ["PreparedRecord", "prepare_record", "key_of", "Value"]

#: What a producer accepts as a value: a JSON object as a mapping, or its JSON text.
Value = Mapping[str, Any] | bytes | str


class PreparedRecord(NamedTuple):
    """A record ready to send: every rule of its stream holds."""

    key: bytes
    value: bytes
    partition: int
    seq: int
    headers: Headers


def key_of(stream: Stream, doc: Any) -> bytes | None:
    """The record key for *doc*: its key field's UTF-8, or None when that field is unusable (the rules say why)."""
    if not isinstance(doc, dict):
        return None
    value = doc.get(stream.key_field)
    if not isinstance(value, str) or not value:
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        return None


def prepare_record(stream: Stream, value: Value, partitions: int, topic: str = "",
                   headers: Headers = (), seq: int | None = None) -> PreparedRecord:
    """Key, partition and check *value* for *stream*; with *seq*, stamp that sequence number on it.

    Raises:
        RecordRefused: the record breaks a rule; it names the stage and the reason.
        ProducerError: *seq* was given but the value already carries a sequence.
    """
    doc: Any = None
    if isinstance(value, dict) or (not isinstance(value, (bytes, str)) and isinstance(value, Mapping)):
        doc = value if seq is None and type(value) is dict else dict(value)
        if seq is not None:
            doc = _stamped(stream, doc, seq)
        try:
            payload = orjson.dumps(doc)
        except TypeError as exc:
            raise RecordRefused(Reason.INVALID_JSON, f"the value is not JSON-serialisable: {exc}") from None
    else:
        payload = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        try:
            doc = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            doc = None  # admit_record names the decode failure
        if seq is not None and isinstance(doc, dict):
            doc = _stamped(stream, doc, seq)
            payload = orjson.dumps(doc)
    if seq is not None and stream.sequence_header:
        headers = tuple(headers)
        if any(name == stream.sequence_header for name, _ in headers):
            raise ProducerError(f"the record already has header {stream.sequence_header!r}, "
                                "but this producer allocates sequences; drop the header or use SequenceSource.FIELD")
        headers = (*headers, (stream.sequence_header, str(seq).encode("ascii")))
    value_of_key = doc.get(stream.key_field) if type(doc) is dict else None
    key = value_of_key.encode("utf-8", "surrogatepass") if type(value_of_key) is str else key_of(stream, doc)
    partition = cached_partition_for_key(key, partitions) if key else 0
    try:
        admitted = admit_record(stream, SourceRecord(topic, partition, -1, 0, key, payload, headers))
    except RecordRejected as rej:
        raise RecordRefused(rej.reason, str(rej)) from None
    return PreparedRecord(admitted.key, payload, partition, admitted.seq, headers)


def _stamped(stream: Stream, doc: dict, seq: int) -> dict:
    name = stream.sequence_field
    if not name:
        return doc  # the sequence goes into a header
    if doc.get(name) is not None:
        raise ProducerError(f"the value already has {name}={doc[name]!r}, but this producer allocates sequences; "
                            "drop the field or use SequenceSource.FIELD")
    doc[name] = seq
    return doc
