"""Paths 1 and 2: the raw aiokafka ceilings, each run as its own process.

``python -m bench.raw consume|copy --broker HOST:PORT --source T [--output T] --partitions N``
prints one JSON line: records, seconds, peak RSS. The clock starts before the
clients start and stops when every partition is read to its end offset (and,
for ``copy``, the producer has flushed every send).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def run(mode: str, bootstrap: str, source: str, output: str | None, partitions: int) -> dict:
    t0 = time.monotonic()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    producer = None
    if mode == "copy":
        # The reference loop: batched, delivery not awaited per record, linger 5 ms, acks=1.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
        await producer.start()
    await consumer.start()
    tps = [TopicPartition(source, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    left = {tp for tp in tps if ends[tp] > 0}
    records = decoded = malformed = 0
    try:
        while left:
            batch = await consumer.getmany(*left, timeout_ms=500)
            for tp, msgs in batch.items():
                for msg in msgs:
                    records += 1
                    try:
                        orjson.loads(msg.value)
                    except orjson.JSONDecodeError:
                        malformed += 1
                        continue
                    decoded += 1
                    if producer is not None:
                        await producer.send(output, msg.value, key=msg.key, partition=msg.partition)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        if producer is not None:
            await producer.flush()
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
    seconds = time.monotonic() - t0
    return {"records": records, "decoded": decoded, "malformed": malformed, "seconds": seconds,
            "peak_rss_mb": peak_rss_mb(), "cpu_s": time.process_time()}


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss is not used: Linux carries it over from the forking parent)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw")
    parser.add_argument("mode", choices=["consume", "copy"])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--output")
    parser.add_argument("--partitions", type=int, required=True)
    args = parser.parse_args()
    if args.mode == "copy" and not args.output:
        parser.error("copy needs --output")
    print(json.dumps(asyncio.run(run(args.mode, args.broker, args.source, args.output, args.partitions))))


if __name__ == "__main__":
    main()
