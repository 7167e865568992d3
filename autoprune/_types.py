"""Types shared across autoprune's layers (imports torch only, so every layer may use it)."""

from __future__ import annotations

import torch

#: One batch of a data loader: inputs and integer class labels.
Batch = tuple[torch.Tensor, torch.Tensor]
