"""Bounded replay of a topic or its archive: planning, reading with the lookback, consumer-group mode, progress."""
