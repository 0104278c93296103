"""Producers for declared streams: records checked, keyed and partitioned at the source.

``StreamProducer`` (async) and ``SyncStreamProducer`` (blocking) send to a
stream's source topic exactly what its ingestion accepts; ``produce_file``
loads a JSON Lines or CSV file through one. See docs/PRODUCERS.md.
"""

from __future__ import annotations

from .errors import DeliveryFailed, ProducerError, RecordRefused, SequenceStoreError
from .prepare import PreparedRecord, prepare_record
from .producer import Delivered, Delivery, ProducerMetrics, StreamProducer, default_sequence_store, find_stream
from .sequences import SequenceAllocator, SequenceSource
from .sync import SyncStreamProducer

__all__ = [
    "StreamProducer", "SyncStreamProducer", "Delivered", "Delivery", "ProducerMetrics",
    "SequenceSource", "SequenceAllocator", "PreparedRecord", "prepare_record",
    "ProducerError", "RecordRefused", "DeliveryFailed", "SequenceStoreError",
    "find_stream", "default_sequence_store",
]
