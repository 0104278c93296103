"""Path 3: a bare Faust agent that forwards each record to a topic, nothing else.

Run as a worker: ``faust -A bench.faust_forward worker``; the names come from
``BENCH_BROKER``, ``BENCH_APP_ID``, ``BENCH_SOURCE``, ``BENCH_OUTPUT``,
``BENCH_DATADIR``. Settings mirror StreamLake's where they matter (commit
interval 1 s, producer linger 5 ms) so the difference is the per-event path.
"""

from __future__ import annotations

import os

import faust

app = faust.App(
    os.environ.get("BENCH_APP_ID", "bench-faust-forward"),
    broker=os.environ.get("BENCH_BROKER", "kafka://127.0.0.1:9092"),
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", ".streamlake/bench-faust"),
    topic_disable_leader=True,
    autodiscover=False,
    broker_commit_interval=1.0,
    consumer_auto_offset_reset="earliest",
    producer_linger=0.005,
    producer_acks=1,
)
source = app.topic(os.environ.get("BENCH_SOURCE", "bench.source"), key_serializer="raw", value_serializer="raw")
output = app.topic(os.environ.get("BENCH_OUTPUT", "bench.output"), key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def forward(stream: faust.StreamT) -> None:
    async for event in stream.events():
        # send() buffers and returns the delivery future: not awaited per record.
        await output.send(key=event.key, value=event.value, partition=event.message.partition)
