"""The incident simulator: seeded ticks, injected faults, the incident file."""
