"""recovery: find, recompute and correct missing or wrong results of Kafka event pipelines."""

__version__ = "0.1.0"
