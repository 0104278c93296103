"""Load a JSON Lines or CSV file into a stream through a :class:`~.producer.StreamProducer`.

Every input line ends in exactly one place: acknowledged by the broker, or in
the rejects file with its line number, stage and reason (refused by the
stream's rules, or not acknowledged). Nothing is skipped silently: a blank
line is a reject too. CSV cells are typed by the stream's declaration (key
field a string, sequence field an integer, required fields their JSON type);
a cell that does not convert stays a string, so the stream's own rules name
the problem. An empty cell is an absent field.
"""

from __future__ import annotations

import collections
import csv
import enum
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from ..config import Settings
from ..core.dlq import Reason
from ..errors import StreamLakeError
from ..topology import Stream
from .errors import DeliveryFailed, ProducerError, RecordRefused
from .producer import Delivery, StreamProducer
from .sequences import SequenceSource

__all__ = ["FileFormat", "InputLine", "ProduceSummary", "read_lines", "produce_file", "default_rejects_path",
           "format_of"]

_MAX_INPUT_ECHO = 4096  # bytes of a rejected line copied into the rejects file


class FileFormat(enum.Enum):
    JSONL = "jsonl"
    CSV = "csv"


_EXTENSIONS = {".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL, ".json": FileFormat.JSONL,
               ".csv": FileFormat.CSV}


def format_of(path: str, explicit: str | None) -> FileFormat:
    """The file's format: *explicit* when given, else from the extension."""
    if explicit:
        return FileFormat(explicit)
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise StreamLakeError(f"cannot tell the format of {path!r} from its extension; "
                              f"use --format jsonl or --format csv (known extensions: {', '.join(_EXTENSIONS)})")
    return _EXTENSIONS[suffix]


def default_rejects_path(path: str) -> Path:
    """``<FILE>.rejects.jsonl``; for standard input, ``stdin.rejects.jsonl`` in the working directory."""
    return Path("stdin.rejects.jsonl") if path == "-" else Path(f"{path}.rejects.jsonl")


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of input: its 1-based line number, its text, and the value to send (or why there is none)."""

    number: int
    text: bytes
    value: Any = None
    refused: RecordRefused | None = None


def read_lines(stream: Stream, handle: IO[bytes], fmt: FileFormat) -> Iterator[InputLine]:
    """Yield every line of *handle* as a value for *stream* (CSV: the header is line 1 and is not yielded)."""
    if fmt is FileFormat.JSONL:
        yield from _jsonl_lines(handle)
    else:
        yield from _csv_lines(stream, handle)


def _jsonl_lines(handle: IO[bytes]) -> Iterator[InputLine]:
    for number, raw in enumerate(handle, 1):
        text = raw.rstrip(b"\r\n")
        if not text.strip():
            yield InputLine(number, text, refused=RecordRefused(Reason.EMPTY_VALUE, "the line is blank"))
        else:
            yield InputLine(number, text, text)


def _csv_lines(stream: Stream, handle: IO[bytes]) -> Iterator[InputLine]:
    types = {**stream.required_fields, stream.key_field: "string"}
    if stream.sequence_field:
        types[stream.sequence_field] = "integer"
    text_handle = io.TextIOWrapper(handle, encoding="utf-8", errors="strict", newline="")
    reader = csv.reader(text_handle)
    try:
        header = next(reader)
    except StopIteration:
        return
    except UnicodeDecodeError as exc:
        raise StreamLakeError(f"the CSV header is not valid UTF-8: {exc}") from None
    line_number = reader.line_num
    while True:
        start = line_number + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            yield InputLine(start, b"", refused=RecordRefused(Reason.INVALID_UTF8,
                                                              f"the line is not valid UTF-8: {exc}"))
            return  # the decoder cannot find the next line boundary reliably after this
        except csv.Error as exc:
            yield InputLine(start, b"", refused=RecordRefused(Reason.INVALID_JSON, f"the CSV row is malformed: {exc}"))
            line_number = reader.line_num
            continue
        line_number = reader.line_num
        text = ",".join(row).encode("utf-8", "replace")
        if not any(cell.strip() for cell in row):
            yield InputLine(start, text, refused=RecordRefused(Reason.EMPTY_VALUE, "the row is blank"))
            continue
        if len(row) != len(header):
            yield InputLine(start, text, refused=RecordRefused(
                Reason.INVALID_JSON, f"the row has {len(row)} cells, the header {len(header)}"))
            continue
        cells = zip(header, row, strict=True)
        yield InputLine(start, text, {name: _typed(cell, types.get(name)) for name, cell in cells if cell != ""})


def _typed(cell: str, type_name: str | None) -> Any:
    try:
        if type_name == "integer":
            return int(cell)
        if type_name == "number":
            return float(cell) if any(c in cell for c in ".eE") or cell.lower() in ("nan", "inf", "-inf") else int(cell)
        if type_name == "boolean":
            return {"true": True, "false": False}.get(cell.strip().lower(), cell)
        if type_name in ("object", "array"):
            return orjson.loads(cell)
    except (ValueError, orjson.JSONDecodeError):
        return cell  # the stream's rules name the wrong type
    return cell


@dataclass
class ProduceSummary:
    """What a file load did: ``lines == delivered + rejected``."""

    stream: str
    topic: str
    source: str
    rejects_path: str
    lines: int = 0
    delivered: int = 0
    rejected: int = 0
    rejected_by_reason: collections.Counter = field(default_factory=collections.Counter)
    not_acknowledged: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream, "topic": self.topic, "source": self.source, "lines": self.lines,
            "delivered": self.delivered, "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason), "not_acknowledged": self.not_acknowledged,
            "rejects_file": self.rejects_path if self.rejected else None, "seconds": round(self.seconds, 3),
            "records_per_second": round(self.lines / self.seconds) if self.seconds else None,
        }


class _Rejects:
    """The rejects file, opened at the first reject (and emptied when a previous run left one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def write(self, line: InputLine, stage: str, reason: str, message: str) -> None:
        if self._handle is None:
            self._handle = self.path.open("wb")
        entry = {"line": line.number, "stage": stage, "reason": reason, "message": message,
                 "input": line.text[:_MAX_INPUT_ECHO].decode("utf-8", "replace")}
        self._handle.write(orjson.dumps(entry) + b"\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        elif self.path.exists():
            self.path.write_bytes(b"")  # a stale file from an earlier run must not speak for this one


async def produce_file(settings: Settings, stream: Stream, source: str, handle: IO[bytes], fmt: FileFormat,
                       rejects_path: Path, sequence: SequenceSource = SequenceSource.FIELD,
                       sequence_store: Path | None = None,
                       on_progress: Callable[[int], None] | None = None) -> ProduceSummary:
    """Send every line of *handle* to *stream*'s source topic; write what is refused to *rejects_path*.

    *on_progress* gets the number of lines read so far, every few hundred lines.
    """
    producer = StreamProducer(stream, settings, sequence=sequence, sequence_store=sequence_store,
                              client_id="streamlake-produce")
    summary = ProduceSummary(stream.name, producer.topic, source, str(rejects_path))
    rejects = _Rejects(rejects_path)
    window: collections.deque[tuple[InputLine, Delivery]] = collections.deque()
    started = time.monotonic()

    async def settle(line: InputLine, delivery: Delivery) -> None:
        try:
            await delivery
        except DeliveryFailed as exc:
            summary.not_acknowledged += 1
            reject(line, "produce", Reason.PRODUCE_FAILED.value, str(exc))
        else:
            summary.delivered += 1

    def reject(line: InputLine, stage: str, reason: str, message: str) -> None:
        summary.rejected += 1
        summary.rejected_by_reason[reason] += 1
        rejects.write(line, stage, reason, message)

    await producer.start()
    try:
        for line in read_lines(stream, handle, fmt):
            summary.lines += 1
            if on_progress is not None and (summary.lines & 0x1FF) == 0:
                on_progress(summary.lines)
            refused = line.refused
            if refused is None:
                try:
                    window.append((line, await producer.send(line.value)))
                except RecordRefused as exc:
                    refused = exc
                except ProducerError as exc:  # e.g. a value that carries its own sequence under --seq allocate
                    reject(line, "sequence", "sequence-conflict", str(exc))
            if refused is not None:
                reject(line, refused.stage.value, refused.reason.value, refused.detail)
            while window and window[0][1].done():
                await settle(*window.popleft())
        await producer.flush()
        while window:
            await settle(*window.popleft())
    finally:
        await producer.close()
        rejects.close()
    summary.seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(summary.lines)
    return summary
