"""Spaces made from a space: each group rounded its own way (:func:`with_rounding`), and a space written
back to YAML (:func:`save_space`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import yaml

from autoprune.engine.rounding import group_min, group_step, round_channels
from autoprune.search_spaces.space import GroupSpace, SearchSpace


def save_space(space: SearchSpace, path: str | Path, *, model: str | None = None, comment: str = "") -> Path:
    """Write ``space`` as a YAML file that :func:`load_space` (and ``autoprune search --space``) reads back.

    Args:
        space: The space (a latency space's table is not written: save it with :meth:`LatencyTable.save`).
        path: The file; missing folders are created.
        model: Model name recorded as ``model:`` (a warning if the file is loaded for another model).
        comment: Written first, each line as a ``#`` comment (where the space came from).

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    data = {**({} if model is None else {"model": model}), **space.to_dict()}
    out.write_text(head + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def with_rounding(space: SearchSpace, round_to: Mapping[str, int]) -> SearchSpace:
    """``space`` with each group of ``round_to`` rounded its own way (the others keep theirs).

    Each choice of such a group moves to the nearest count its new rounding allows (up to the smallest
    allowed count if it fell below it); duplicates merge. The budget is checked again.

    Args:
        space: The space.
        round_to: Group name -> its rounding, each in ``[1, channels]``.

    Raises:
        AutoPruneError: an unknown group, or a rounding below 1 or above the group's channels;
            BudgetError: the target can no longer be met.
    """
    for name in round_to:
        space.group(name)  # an unknown name raises with the valid ones
    groups = []
    for g in space.groups:
        if g.name not in round_to:
            groups.append(g)
            continue
        own = GroupSpace(g.name, g.channels, (g.channels,), round_to[g.name]).round_to  # validates it
        assert own is not None
        model_group = space.structure.group(g.name)
        step, least = group_step(model_group, own), group_min(model_group, own)
        counts = {round_channels(c, g.channels, step, least=least) for c in g.choices}
        groups.append(GroupSpace(g.name, g.channels, tuple(sorted(counts)), own))
    return dataclasses.replace(space, groups=tuple(groups))
