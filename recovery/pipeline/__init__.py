"""The recovery of a range: dedup, compare, and the engines that run them (in memory, by partition)."""
