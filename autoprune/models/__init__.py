"""autoprune.models."""
