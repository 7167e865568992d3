"""Gymnasium environments for layer-wise pruning-ratio search (installed as ``autoprune.envs``).

The environments (``autoprune/LayerPruning-v0``, ``autoprune/RatioVector-v0``) arrive with the RL issue.
"""
