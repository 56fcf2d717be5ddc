"""The maths of the metrics: window definitions and the recompute. Knows no Kafka."""
