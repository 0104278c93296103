"""The example stream: orders keyed by ``order_id``, sequenced by ``seq``.

Any JSON object with a non-empty string ``order_id`` and an integer ``seq``
(0 <= seq < 2**63) is accepted; other fields pass through untouched.
The ``columns`` are the lake table's typed columns (``sales.orders_v1``); ``ts`` is
the order time in epoch milliseconds, and the table is partitioned by its day.
"""

from streamlake.topology import Stream

orders = Stream(
    domain="sales",
    dataset="orders",
    version=1,
    key_field="order_id",
    sequence_field="seq",
    columns={
        "order_id": "string",
        "customer_id": "string",
        "amount": "decimal(12,2)",
        "currency": "string",
        "status": "string",
        "ts": "timestamptz",
    },
    event_time_field="ts",
)
