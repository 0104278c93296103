"""A blocking front for :class:`~.producer.StreamProducer`, for code without an event loop.

The async producer runs on its own event loop in one background thread;
every call hands work to that loop and waits for it, so records keep the
order of the calls. ``send`` raises :class:`~.errors.RecordRefused` in the
caller's thread, before anything is sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from ..config import Settings, load_settings
from .errors import ProducerError
from .prepare import Value
from .producer import Delivered, ProducerMetrics, StreamProducer, find_stream

__all__ = ["SyncStreamProducer"]

T = TypeVar("T")


class SyncStreamProducer:
    """``with SyncStreamProducer.for_stream("sales.orders") as p: p.send({...}).result()``."""

    def __init__(self, producer: StreamProducer) -> None:
        self._producer = producer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamlake-producer", daemon=True)
        self._running = False

    @classmethod
    def for_stream(cls, name: str, settings: Settings | None = None, **options: Any) -> SyncStreamProducer:
        settings = settings or load_settings()
        return cls(StreamProducer(find_stream(settings, name), settings, **options))

    @property
    def metrics(self) -> ProducerMetrics:
        return self._producer.metrics

    def __enter__(self) -> SyncStreamProducer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()
        self._running = True
        try:
            self._call(self._producer.start())
        except BaseException:
            self._stop_loop()
            raise

    def send(self, value: Value, headers: Iterable[tuple[str, bytes]] = ()) -> concurrent.futures.Future[Delivered]:
        """Queue one record; the returned future gives its :class:`Delivered` once acknowledged."""
        delivery = self._call(self._producer.send(value, tuple(headers)))
        return asyncio.run_coroutine_threadsafe(_await(delivery), self._loop)

    def send_and_wait(self, value: Value, headers: Iterable[tuple[str, bytes]] = ()) -> Delivered:
        return self._call(self._producer.send_and_wait(value, tuple(headers)))

    def flush(self) -> None:
        self._call(self._producer.flush())

    def close(self) -> None:
        if not self._running:
            return
        try:
            self._call(self._producer.close())
        finally:
            self._stop_loop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._running:
            coro.close()
            raise ProducerError("the producer is not started; use `with` or call start() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._running = False
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


async def _await(delivery: Any) -> Delivered:
    return await delivery

