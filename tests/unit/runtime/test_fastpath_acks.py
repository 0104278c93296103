"""A message Faust's stream skipped without processing it is never acked (so never committed past)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

from faust.streams import Stream
from faust.types.tuples import ConsumerMessage

from streamlake.runtime import compat
from streamlake.runtime.fastpath import BatchConsumer


def consumer_acking(topics: set[str]) -> Any:
    return SimpleNamespace(app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda t: t in topics)))


def test_faust_acks_what_its_stream_skips_and_tracks_only_what_it_keeps() -> None:
    loop = inspect.getsource(Stream._py_aiter)
    skip = loop.index("message.generation_id != self.app.consumer_generation_id")
    assert loop.index("value = skipped_value", skip) < loop.index("message.tracked = True", skip)
    assert "if event is not None and (do_ack or value is skipped_value):" in loop
    assert "last_stream_to_ack = event.ack()" in loop
    assert ConsumerMessage.use_tracking is True  # a consumer message starts untracked


def test_an_untracked_message_of_an_acked_topic_is_not_acked() -> None:
    message = SimpleNamespace(topic="src", tracked=False, acked=False)
    assert BatchConsumer.ack(consumer_acking({"src"}), message) is False
    assert message.acked is False


def test_a_tracked_message_goes_to_fausts_ack(monkeypatch: Any) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(compat.ConsumerSeam, "ack", lambda self, message: seen.append(message) or True)
    tracked = SimpleNamespace(topic="src", tracked=True)
    other_topic = SimpleNamespace(topic="changelog", tracked=False)
    consumer = BatchConsumer.__new__(BatchConsumer)  # nothing but the app's topics is read
    consumer.app = consumer_acking({"src"}).app
    assert BatchConsumer.ack(consumer, tracked) is True
    assert BatchConsumer.ack(consumer, other_topic) is True
    assert seen == [tracked, other_topic]
