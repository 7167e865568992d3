"""Declarative pruning search spaces (installed as ``autoprune.search_spaces``).

YAML spaces for the built-in models, their loader/validator and budget projection arrive with the
supernet issue.
"""
