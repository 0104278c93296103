"""Path 5, the peer: the same stateful work written with Quix Streams.

Decode the JSON, keep the last ``seq`` per key in Quix's (RocksDB, changelog-
backed) state, forward records whose ``seq`` is new; drop duplicates and
malformed records. Run as ``python -m bench.quix_pipeline``; the names come
from ``BENCH_BROKER``, ``BENCH_APP_ID`` (the group), ``BENCH_SOURCE``,
``BENCH_OUTPUT``, ``BENCH_DATADIR``. Commit interval 1 s, like StreamLake's.
"""

from __future__ import annotations

import os

import orjson
from quixstreams import Application, State


def track(value: bytes, state: State) -> bytes | None:
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    seq = record.get("seq") if isinstance(record, dict) else None
    if not isinstance(seq, int):
        return None
    last = state.get("last_seq", -1)
    if seq <= last:
        return None
    state.set("last_seq", seq)
    return value


def main() -> None:
    app = Application(
        broker_address=os.environ["BENCH_BROKER"].split("://", 1)[-1],
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        commit_interval=1.0,
        state_dir=os.environ.get("BENCH_DATADIR", ".streamlake/bench-quix"),
        loglevel="WARNING",
    )
    source = app.topic(os.environ["BENCH_SOURCE"], key_deserializer="bytes", value_deserializer="bytes")
    output = app.topic(os.environ["BENCH_OUTPUT"], key_serializer="bytes", value_serializer="bytes")
    sdf = app.dataframe(source)
    sdf = sdf.apply(track, stateful=True).filter(lambda value: value is not None)
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
