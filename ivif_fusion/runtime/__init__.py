"""Runtime: shared types, pairing, the per-pair pipeline, backends."""
