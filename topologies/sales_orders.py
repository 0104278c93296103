"""The example stream: orders keyed by ``order_id``, sequenced by ``seq``.

Any JSON object with a non-empty string ``order_id`` and an integer ``seq``
(0 <= seq < 2**63) is accepted; other fields pass through untouched.
"""

from streamlake.topology import Stream

orders = Stream(
    domain="sales",
    dataset="orders",
    version=1,
    key_field="order_id",
    sequence_field="seq",
)
