"""autoprune.cli."""
