"""The live worker and its fault hooks; shares the spec and the window maths with the recompute."""
