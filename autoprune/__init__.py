"""autoprune: search-based automatic structured pruning for PyTorch models."""

__version__ = "0.1.0"

__all__ = ["__version__"]
