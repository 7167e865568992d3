"""autoprune.engine."""
