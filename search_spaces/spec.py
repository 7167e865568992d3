"""Search-space specs (YAML files, bundled or the user's, and plain dicts): loading and validation.

The format is documented in ``search_spaces/README.md``. Every malformed spec raises an
:class:`AutoPruneError` that names the bad value and the fix; budgets that cannot be met raise a
:class:`BudgetError` with the smallest reachable fraction.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from autoprune.engine.latency_table import LatencyTable
from autoprune.engine.rounding import group_min, group_step, round_channels
from autoprune.engine.structure import ModelStructure, PrunableGroup
from autoprune.errors import AutoPruneError, BudgetError
from autoprune.search_spaces._checks import integer, number, ratio, show, suggest
from autoprune.search_spaces.budget import check_reachable, check_target
from autoprune.search_spaces.space import METRICS, GroupSpace, SearchSpace

TOP_KEYS = ("model", "metric", "target", "round_to", "defaults", "groups", "exclude")
GRID_KEYS = ("min_ratio", "max_ratio", "step")
GROUP_KEYS = (*GRID_KEYS, "choices", "counts", "channels", "round_to")
GRID_DEFAULTS = {"min_ratio": 0.25, "max_ratio": 1.0, "step": 0.125}
_HERE = Path(__file__).resolve().parent
_MAX_GRID = 100_000  # grids finer than this are replaced by "every allowed count between min and max"


def space_names() -> list[str]:
    """Names of the bundled spaces (``search_spaces/<name>.yaml``)."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


def auto_space(
    structure: ModelStructure,
    *,
    target: float = 0.5,
    metric: str = "macs",
    min_ratio: float = 0.25,
    max_ratio: float = 1.0,
    step: float = 0.125,
    round_to: int = 1,
    latency_table: LatencyTable | None = None,
) -> SearchSpace:
    """A space over every group of the model, with one keep-ratio grid for all of them.

    Args:
        structure: The model's groups.
        target: Fraction of the dense metric to keep, in (0, 1].
        metric: ``"macs"``, ``"params"`` or ``"latency"`` (needs ``latency_table``).
        min_ratio: Smallest keep ratio of a group, in (0, 1].
        max_ratio: Largest keep ratio, in [min_ratio, 1].
        step: Spacing of the ratio grid ``min_ratio, min_ratio + step, ..., max_ratio``.
        round_to: Kept counts are multiples of this (unless a group stays whole).
        latency_table: Per-layer latencies covering the space's choices (see
            :func:`autoprune.engine.latency_table.build_latency_table`); required by metric latency.

    Raises:
        AutoPruneError: a malformed argument, or metric latency without a (covering) latency table;
            BudgetError: ``target`` cannot be met.
    """
    spec = {
        "metric": metric,
        "target": target,
        "round_to": round_to,
        "defaults": {"min_ratio": min_ratio, "max_ratio": max_ratio, "step": step},
    }
    return build_space(spec, structure, source="auto_space", latency_table=latency_table)


def load_space(
    source: str | Path | Mapping[str, Any],
    structure: ModelStructure,
    *,
    target: float | None = None,
    model: str | None = None,
    latency_table: LatencyTable | None = None,
) -> SearchSpace:
    """Load and validate a search space for ``structure``.

    Args:
        source: A YAML file path, the name of a bundled space (``"resnet20"``; see :func:`space_names`),
            or an already-parsed mapping.
        structure: The model's groups.
        target: Overrides the spec's target (fraction of the dense metric to keep).
        model: Name of the model the space is used with; a spec naming another model gives a warning.
        latency_table: Per-layer latencies covering the space's choices, required by ``metric: latency``
            (see :func:`autoprune.engine.latency_table.build_latency_table`).

    Raises:
        AutoPruneError: missing file, YAML syntax error, malformed spec (naming the key and the fix),
            metric latency without a (covering) latency table; BudgetError: a target outside (0, 1] or one
            the space cannot reach.
    """
    if isinstance(source, Mapping):
        return build_space(
            source, structure, target=target, model=model, source="search space", latency_table=latency_table
        )
    if not isinstance(source, (str, Path)):
        raise AutoPruneError(
            f"search space source must be a YAML path, a bundled name or a mapping, got {show(source)}"
        )
    path = _resolve(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutoPruneError(f"cannot read search space file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AutoPruneError(f"{path}: YAML syntax error: {exc}") from None
    if data is None:
        raise AutoPruneError(f"{path} is empty; a search space needs at least 'metric' and 'target'")
    return build_space(data, structure, target=target, model=model, source=str(path.name), latency_table=latency_table)


def _resolve(source: str | Path) -> Path:
    names = space_names()
    if isinstance(source, str) and source in names:
        return _HERE / f"{source}.yaml"
    path = Path(source)
    if path.is_file():
        return path
    raise AutoPruneError(
        f"search space {str(source)!r} is neither a bundled space nor an existing YAML file."
        f"{suggest(source, names)} Bundled spaces: {', '.join(names)}"
    )


def space_from_dict(
    data: Mapping[str, Any], structure: ModelStructure, *, latency_table: LatencyTable | None = None
) -> SearchSpace:
    """The space that :meth:`SearchSpace.to_dict` wrote (a latency space's table is saved separately).

    Raises:
        AutoPruneError: as :func:`load_space`.
    """
    return build_space(data, structure, source="search space dict", latency_table=latency_table)


def build_space(
    spec: Any,
    structure: ModelStructure,
    *,
    target: float | None = None,
    model: str | None = None,
    source: str = "search space",
    latency_table: LatencyTable | None = None,
) -> SearchSpace:
    """Validate a parsed spec and build its :class:`SearchSpace` (errors are prefixed with ``source``)."""
    try:
        return _build(spec, structure, target, model, latency_table)
    except BudgetError as exc:
        raise BudgetError(f"{source}: {exc}") from None
    except AutoPruneError as exc:
        raise AutoPruneError(f"{source}: {exc}") from None


def _build(
    spec: Any, structure: ModelStructure, target: float | None, model: str | None, latency_table: LatencyTable | None
) -> SearchSpace:
    if not isinstance(spec, Mapping):
        raise AutoPruneError(
            f"a search space must be a mapping with keys such as {', '.join(TOP_KEYS)}; got {show(spec)}"
        )
    _check_keys(spec, TOP_KEYS, None)
    spec_model = spec.get("model")
    if spec_model is not None and not isinstance(spec_model, str):
        raise AutoPruneError(f"'model' must be a model name such as 'resnet20', got {show(spec_model)}")
    if spec_model is not None and model is not None and spec_model != model:
        warnings.warn(
            f"search space written for model {spec_model!r} is used with {model!r}; its group names were "
            "checked and exist, but its bounds may not suit this model",
            UserWarning,
            stacklevel=4,
        )
    metric = _metric(spec.get("metric", "macs"))
    goal = spec.get("target", 0.5) if target is None else target
    goal_value = check_target(goal, metric)
    round_to = integer(spec.get("round_to", 1), "round_to")
    defaults = _grid_values(_mapping(spec.get("defaults"), "defaults"), "defaults", GRID_KEYS, dict(GRID_DEFAULTS))
    configured = _mapping(spec.get("groups"), "groups", hint="write `groups: {name: {min_ratio: 0.5}, ...}`")
    excluded = _name_list(spec.get("exclude"), "exclude")
    valid = structure.group_names
    for name in [*configured, *excluded]:
        if not isinstance(name, str) or name not in valid:
            raise AutoPruneError(
                f"unknown group {show(name)}.{suggest(name, valid)} This model's groups are: {', '.join(valid)}"
            )
    both = [n for n in configured if n in excluded]
    if both:
        raise AutoPruneError(
            f"group {both[0]!r} is both configured under 'groups' and listed in 'exclude'; remove it from one"
        )
    searched = [
        g for g in structure.groups if (not spec.get("groups") or g.name in configured) and g.name not in excluded
    ]
    groups = tuple(_group_space(g, configured.get(g.name), defaults, round_to) for g in searched)
    return SearchSpace(
        groups=groups,
        metric=metric,
        target=goal_value,
        round_to=round_to,
        structure=structure,
        latency_table=latency_table,
    )


def _metric(value: Any) -> Any:
    if not isinstance(value, str):
        raise AutoPruneError(f"metric must be one of {', '.join(METRICS)}, got {show(value)}")
    metric = value.lower()
    if metric not in METRICS:
        raise AutoPruneError(
            f"metric {value!r} is not supported.{suggest(metric, METRICS)} Use one of: {', '.join(METRICS)}"
        )
    return metric


def _check_keys(data: Mapping[Any, Any], valid: tuple[str, ...], where: str | None) -> None:
    """Refuse keys outside ``valid`` (``where``: the enclosing section, None at the top level)."""
    for key in data:
        if key not in valid:
            what = f"unknown key {show(key)} in {where}" if where else f"unknown top-level key {show(key)}"
            raise AutoPruneError(f"{what}.{suggest(key, valid)} Valid keys: {', '.join(valid)}")


def _mapping(value: Any, what: str, hint: str = "") -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AutoPruneError(
            f"'{what}' must be a mapping, got {show(value)} ({type(value).__name__}){'; ' + hint if hint else ''}"
        )
    return dict(value)


def _name_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise AutoPruneError(f"'{what}' must be a list of group names, e.g. [conv1], got {show(value)}")
    return list(value)


def _grid_values(
    data: Mapping[Any, Any], where: str, keys: tuple[str, ...], base: dict[str, float]
) -> dict[str, float]:
    """``base`` updated with the validated grid keys of ``data`` (after checking ``data``'s keys)."""
    _check_keys(data, keys, where)
    values = dict(base)
    for key in GRID_KEYS:
        if key in data:
            what = f"{where}: {key}"
            values[key] = number(data[key], what) if key == "step" else ratio(data[key], what)
    if values["step"] <= 0:
        raise AutoPruneError(f"{where}: step={values['step']} must be > 0 (the spacing of the keep-ratio grid)")
    if values["min_ratio"] > values["max_ratio"]:
        raise AutoPruneError(
            f"{where}: min_ratio={values['min_ratio']} is larger than max_ratio={values['max_ratio']}; "
            "lower min_ratio or raise max_ratio"
        )
    return values


def _group_space(
    group: PrunableGroup, entry: Any, defaults: dict[str, float], round_to: int
) -> GroupSpace:
    where = f"group {group.name!r}"
    data = _mapping(entry, f"groups.{group.name}", hint="write e.g. `{min_ratio: 0.5}` or `{choices: [0.5, 1.0]}`")
    _check_keys(data, GROUP_KEYS, where)
    own = None
    if "round_to" in data:  # the group's own rounding (e.g. a measured latency step), checked by GroupSpace
        own = GroupSpace(group.name, group.channels, (group.channels,), data["round_to"]).round_to
        assert own is not None
        round_to = own
    step, least = group_step(group, round_to), group_min(group, round_to)
    if "channels" in data and integer(data["channels"], f"{where}: channels") != group.channels:
        raise AutoPruneError(
            f"{where} has {group.channels} channels but the space says {data['channels']}: it was made for a "
            "different model"
        )
    discrete = [k for k in ("choices", "counts") if k in data]
    grid = [k for k in GRID_KEYS if k in data]
    if len(discrete) > 1 or (discrete and grid):
        raise AutoPruneError(f"{where}: use either {' or '.join(discrete)} or min_ratio/max_ratio/step, not both")
    if "counts" in data:
        counts = {integer(c, f"{where}: count") for c in _values(data["counts"], f"{where}: counts")}
        bad = sorted(c for c in counts if c > group.channels or c < least or (c % step and c != group.channels))
        if bad:
            raise AutoPruneError(
                f"{where}: counts {bad} are not allowed; use multiples of {step} (round_to={round_to}) from {least} "
                f"up to {group.channels} (or {group.channels} itself)"
            )
    elif "choices" in data:
        ratios = [ratio(r, f"{where}: choice") for r in _values(data["choices"], f"{where}: choices")]
        counts = {round_channels(r * group.channels, group.channels, step, least=least) for r in ratios}
    else:
        counts = _grid_counts(group, _grid_values(data, where, GROUP_KEYS, defaults), step, least)
    return GroupSpace(name=group.name, channels=group.channels, choices=tuple(sorted(counts)), round_to=own)


def _values(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)) or not value:
        raise AutoPruneError(f"{what} must be a non-empty list, e.g. [0.25, 0.5, 1.0], got {show(value)}")
    return list(value)


def _grid_counts(group: PrunableGroup, grid: dict[str, float], step: int, least: int) -> set[int]:
    """Kept counts of the ratio grid min, min + step, ..., max (max always included), rounded to ``step``
    and at least ``least`` (every branch of a concatenation keeps a channel)."""
    channels = group.channels
    low, high, spacing = grid["min_ratio"], grid["max_ratio"], grid["step"]
    n = math.floor((high - low) / spacing + 1e-9)
    if n > min(_MAX_GRID, 2 * channels):  # finer than a channel: every allowed count in range is hit
        first = round_channels(low * channels, channels, step, least=least)
        last = round_channels(high * channels, channels, step, least=least)
        counts = set(range(first, last + 1, step)) | {last}
        return {c for c in counts if c % step == 0 or c == channels}
    ratios = [min(low + i * spacing, high) for i in range(n + 1)] + [high]
    return {round_channels(r * channels, channels, step, least=least) for r in ratios}


def channel_space(
    structure: ModelStructure,
    *,
    target: float,
    metric: str = "macs",
    round_to: int = 1,
    min_keep_ratio: float = 0.05,
) -> SearchSpace:
    """A space over every group whose choices are every allowed width: the standard pipeline's budget.

    Each group may keep any multiple of its step (``round_to`` and its channel blocks) from
    ``ceil(min_keep_ratio * channels)`` (at least one step, and one block per branch of a concatenation)
    up to all its channels.

    Raises:
        BudgetError: ``target`` outside (0, 1] or below the cost of every group at its minimum.
    """
    groups = []
    for g in structure.groups:
        step = group_step(g, round_to)
        wished = max(group_min(g, round_to), math.ceil(min_keep_ratio * g.channels - 1e-9))
        least = min(g.channels, math.ceil(wished / step) * step)
        choices = sorted({*range(least, g.channels + 1, step), g.channels})
        groups.append(GroupSpace(g.name, g.channels, tuple(choices)))
    whole = SearchSpace(tuple(groups), metric, 1.0, round_to, structure)  # type: ignore[arg-type]
    goal = check_target(target, metric)
    if whole.min_cost() > goal + 1e-12:  # checked here to name the standard pipeline's own fix
        check_reachable(whole, target=goal, fix="lower round_to (--round-to) if it is above 1")
    return dataclasses.replace(whole, target=goal)

