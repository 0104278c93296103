"""The Kafka-facing side: client settings, admin, offsets and raw producers.

Everything that talks to the broker outside Faust's agents goes through this
package; the pure core never imports it.
"""
