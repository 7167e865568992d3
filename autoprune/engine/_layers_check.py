"""One check of the layer names a user gives (ignored or excluded layers) against the model's modules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from torch import nn

from autoprune.errors import AutoPruneError


def check_layer_names(
    modules: Mapping[str, nn.Module], names: Iterable[str], *, role: str, examples: Sequence[str]
) -> None:
    """Refuse a name that is not a module of the model, suggesting a few that are.

    Args:
        modules: ``dict(model.named_modules())``.
        names: The layer names given.
        role: What they were given as (``"ignored"``, ``"excluded"``), for the message.
        examples: Module names to suggest (the first three are shown).

    Raises:
        AutoPruneError: a name that ``modules`` lacks, with the value and valid names.
    """
    for name in names:
        if name not in modules:
            raise AutoPruneError(
                f"{role} layer {name!r} is not a module of the model; "
                f"use one of its module names, e.g. {list(examples)[:3]}"
            )
