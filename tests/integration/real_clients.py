"""Third-party Kafka clients as producers: confluent-kafka (librdkafka), kcat, Kafka's console producer.

Each driver sends ``(key, value)`` pairs in order to a topic with the
client's own partitioner, the way a team would use it, and returns once the
client says every record was delivered.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from streamlake.broker import resolve_jars

Pairs = Sequence[tuple[bytes, bytes]]


def confluent_produce(bootstrap: str, topic: str, pairs: Pairs, **config: Any) -> None:
    """confluent-kafka with its default settings (librdkafka's ``consistent_random`` partitioner) unless *config*."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **config})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries make room
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0 and not errors, f"confluent-kafka: {left} undelivered, errors {errors[:3]}"


def kcat_produce(bootstrap: str, topic: str, pairs: Pairs, *extra: str) -> None:
    """kcat (librdkafka, default partitioner): one ``key<TAB>value`` line per record."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed; ./scripts/setup installs the Debian package"
    lines = b"".join(key + b"\t" + value + b"\n" for key, value in pairs)
    subprocess.run([kcat, "-b", bootstrap, "-t", topic, "-P", "-K", "\t", "-X", "acks=all", *extra],
                   input=lines, check=True, timeout=120, capture_output=True)


def console_produce(bootstrap: str, topic: str, pairs: Pairs) -> None:
    """Kafka's own console producer from the broker's jars (the Java client's default partitioner)."""
    java = shutil.which("java")
    assert java, "java is not installed"
    libs = resolve_jars()
    lines = b"".join(key + b"\t" + value + b"\n" for key, value in pairs)
    subprocess.run([java, "-Xmx256m", "-cp", f"{libs}/*", "org.apache.kafka.tools.ConsoleProducer",
                    "--bootstrap-server", bootstrap, "--topic", topic, "--property", "parse.key=true",
                    "--property", "key.separator=\t", "--producer-property", "acks=all"],
                   input=lines, check=True, timeout=180, capture_output=True)
