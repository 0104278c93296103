"""StreamLake's benchmark harness: ``python -m bench`` (see docs/BENCHMARKS.md).

Every path runs as its own process on the same prefilled data, so each one's
peak RSS is its own. The harness only produces, watches offsets and reports:
it measures, it never asserts.
"""
