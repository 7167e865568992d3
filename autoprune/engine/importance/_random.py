"""Random scores: the baseline every criterion should beat."""

from __future__ import annotations

import zlib

import torch

from autoprune.engine.importance._base import Importance, finalize, register_importance
from autoprune.engine.structure import PrunableGroup


@register_importance("random")
class RandomImportance(Importance):
    """Uniform random scores, reproducible: one generator per group (or parameter) name and seed.

    Args:
        seed: Same seed, same scores for the same group name, whatever the order groups are scored in.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def _generator(self, key: str) -> torch.Generator:
        generator = torch.Generator()
        # torch's CPU generator only uses 32 bits of the seed
        generator.manual_seed((self.seed + zlib.crc32(key.encode())) % 2**32)
        return generator

    def __call__(self, group: PrunableGroup) -> torch.Tensor:
        return finalize(torch.rand(group.channels, generator=self._generator(group.name)), group)

    def unstructured_scores(self, param: torch.Tensor, name: str) -> torch.Tensor:
        return torch.rand(param.shape, generator=self._generator(name)).to(param.device)
