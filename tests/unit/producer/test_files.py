"""Reading JSON Lines and CSV for ``streamlake produce``: every line accounted for, CSV typed by the declaration."""

from __future__ import annotations

import io

import pytest

from streamlake.core.dlq import Reason
from streamlake.errors import StreamLakeError
from streamlake.producer.files import FileFormat, default_rejects_path, format_of, read_lines
from streamlake.topology import Stream

ORDERS = Stream(domain="sales", dataset="orders", key_field="order_id",
                required_fields={"amount": "number", "paid": "boolean", "items": "array"})


def test_jsonl_lines_keep_their_numbers_and_blank_lines_are_rejected_not_skipped():
    lines = list(read_lines(ORDERS, io.BytesIO(b'{"a":1}\n\n{"b":2}\r\n'), FileFormat.JSONL))
    assert [(line.number, line.value) for line in lines] == [(1, b'{"a":1}'), (2, None), (3, b'{"b":2}')]
    assert lines[1].refused is not None and lines[1].refused.reason is Reason.EMPTY_VALUE


def test_csv_cells_are_typed_by_the_stream_and_unconvertible_cells_stay_strings():
    data = (b"order_id,seq,amount,paid,items,note\n"
            b"o1,3,9.5,true,\"[1,2]\",hello\n"
            b"o2,x,7,no,,\n"
            b",,,,,\n"
            b"o3,1\n")
    lines = list(read_lines(ORDERS, io.BytesIO(data), FileFormat.CSV))
    assert lines[0].number == 2
    assert lines[0].value == {"order_id": "o1", "seq": 3, "amount": 9.5, "paid": True, "items": [1, 2], "note": "hello"}
    assert lines[1].value == {"order_id": "o2", "seq": "x", "amount": 7, "paid": "no"}  # empty cells are absent
    assert lines[2].refused is not None and lines[2].refused.reason is Reason.EMPTY_VALUE
    assert lines[3].refused is not None and "2 cells" in lines[3].refused.detail
    assert [line.number for line in lines] == [2, 3, 4, 5]


def test_format_comes_from_the_extension_unless_given_and_an_unknown_one_says_what_to_do():
    assert format_of("a/orders.csv", None) is FileFormat.CSV
    assert format_of("orders.ndjson", None) is FileFormat.JSONL
    assert format_of("orders.txt", "csv") is FileFormat.CSV
    with pytest.raises(StreamLakeError, match="--format"):
        format_of("orders.txt", None)
    assert str(default_rejects_path("/x/orders.jsonl")) == "/x/orders.jsonl.rejects.jsonl"
