"""The lake: every ``valid`` topic lands exactly once in an Apache Iceberg table (docs/LAKE.md).

Modules, in data-flow order:

- :mod:`.settings` — ``[lake]`` conf, environment overrides, credentials from the environment only;
- :mod:`.tables` — the catalog, one table per stream (create, evolve), landed offsets;
- :mod:`.writer` — one table commit of buffered rows with their offsets (the exactly-once step);
- :mod:`.lander` — the lander process (``streamlake land``) and :mod:`.metrics` (its web endpoints);
- :mod:`.info`, :mod:`.query`, :mod:`.verify` — reading the lake: offsets, freshness, row counts,
  history, landing lag, SQL through DuckDB, verification against Kafka;
- :mod:`.maintenance` — ``lake compact`` and ``lake expire``; :mod:`.status`, :mod:`.reconcile` —
  ``streamlake status``'s lake section and the demo's reconciliation.

The pure rules live in :mod:`streamlake.core.lake_schema`, :mod:`streamlake.core.lake_rows` and
:mod:`streamlake.core.lake_progress`; Kafka I/O in :mod:`streamlake.kafka.landing`.
"""
