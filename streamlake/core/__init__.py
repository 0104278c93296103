"""The pure core: no Faust, no aiokafka. Plain functions and frozen dataclasses."""
