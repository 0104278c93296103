"""StreamLake: Kafka ingestion topologies on Faust."""

__version__ = "0.1.0"
