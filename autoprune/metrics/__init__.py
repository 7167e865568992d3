"""autoprune.metrics."""
