"""Weight-sharing supernet: shared weights, channel gates, sandwich training, adaptive BN, extraction."""

from autoprune.supernet.bn import adaptive_bn
from autoprune.supernet.gates import ApproximateGatesWarning, ChannelGates
from autoprune.supernet.sandwich import SupernetConfig, SupernetHistory, train_supernet
from autoprune.supernet.supernet import SubnetSampler, Supernet

__all__ = [
    "ApproximateGatesWarning",
    "ChannelGates",
    "SubnetSampler",
    "Supernet",
    "SupernetConfig",
    "SupernetHistory",
    "adaptive_bn",
    "train_supernet",
]
