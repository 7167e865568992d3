"""One policy, every budget: save a trained RL searcher's agent, load it elsewhere, answer a target.

A saved policy is two files side by side: the agent in Stable-Baselines3's own zip format
(``policy.zip``, written by ``model.save``, read back by ``DDPG.load`` and its siblings) and a JSON
sidecar (``policy.json``, :class:`PolicyInfo`) that says what it was trained for: the searcher, the
target range and budget metric, the search space (groups and their choices, with a fingerprint), the
episode settings and, where the command knows them, the model, dataset and supernet file.

Answering a target is one deterministic rollout of the episode logic the agent was trained on
(:class:`~autoprune.envs.EpisodeCore`, the same clipping and projection), with the policy's mean action
and no exploration::

    saved = SavedPolicy.load("runs/rl/policy.zip")
    counts = saved.answer(space, 0.45)      # meets 0.45 of the dense MACs; no evaluation

Loading unpickles parts of the zip (SB3's format does): load only policies you trust.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autoprune._jsonfile import read_json, write_json_atomic
from autoprune.envs import EpisodeCore
from autoprune.errors import AutoPruneError
from autoprune.search_spaces import SearchSpace

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from autoprune.search.rl.common import RLSearcher

#: The file name ``autoprune search --target-range`` gives the policy in its run folder.
POLICY_FILE = "policy.zip"
#: Version of the sidecar's layout.
POLICY_FORMAT = 1


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a policy zip (``policy.zip`` -> ``policy.json``)."""
    return Path(path).with_suffix(".json")


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of what a policy's actions mean: searched groups, their channels and choices, metric, rounding.

    The target is left out: it is what a budget-conditioned policy is asked for.
    """
    data = {"metric": space.metric, "round_to": space.round_to,
            "groups": [[g.name, g.channels, list(g.choices)] for g in space.groups]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PolicyInfo:
    """The sidecar of a saved policy: what it was trained for, to refuse what it was not.

    Attributes:
        searcher: The RL searcher (``ddpg``, ``td3``, ``sac`` or ``ppo``): which SB3 class loads the zip.
        target_range: ``[low, high]`` of the budget metric it was trained over (a fixed-target policy:
            ``[t, t]``).
        metric: The budget metric (``macs`` or ``params``).
        fingerprint: :func:`space_fingerprint` of its search space.
        space: The search space as :meth:`SearchSpace.to_dict` writes it (groups, choices, metric, rounding).
        features: Names of the observation features (budget-conditioned ones end with ``target``).
        budget_slack: The lower clipping of its episodes.
        episodes: Episodes it learned from.
        seed: The search's seed.
        model: Model name, dataset and supernet file of the run (``None`` when not known).
        dataset: See ``model``.
        supernet: See ``model``.
        format: :data:`POLICY_FORMAT`.
        extra: Further entries the caller gave :func:`save_policy`.
    """

    searcher: str
    target_range: tuple[float, float]
    metric: str
    fingerprint: str
    space: dict[str, Any]
    features: tuple[str, ...]
    budget_slack: float | None
    episodes: int
    seed: int
    model: str | None = None
    dataset: str | None = None
    supernet: str | None = None
    format: int = POLICY_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def conditioned(self) -> bool:
        """Whether the observation carries the target (trained with a target range)."""
        return bool(self.features) and self.features[-1] == "target"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(target_range=list(self.target_range), features=list(self.features))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> PolicyInfo:
        known = set(cls.__dataclass_fields__)
        try:
            values = {k: v for k, v in data.items() if k in known}
            values["target_range"] = tuple(float(v) for v in values["target_range"])
            values["features"] = tuple(values["features"])
            return cls(**values)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise AutoPruneError(f"{where} is not a policy sidecar written by autoprune ({exc}); save the policy "
                                 "again with `autoprune search --target-range`") from None


def save_policy(searcher: RLSearcher, path: str | Path, *, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``searcher``'s agent to ``path`` (SB3's zip) and its :class:`PolicyInfo` sidecar beside it.

    Args:
        searcher: A trained RL searcher.
        path: The zip to write (``.zip`` is appended by SB3 when missing; give it).
        meta: ``model``, ``dataset``, ``supernet`` and any other entries (kept under ``extra``).

    Returns:
        The zip and the sidecar.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    searcher.model.save(path)
    space = searcher.space
    low_high = searcher.core.target_range or (space.target, space.target)
    meta = dict(meta or {})
    info = PolicyInfo(
        searcher=searcher.name, target_range=(float(low_high[0]), float(low_high[1])), metric=space.metric,
        fingerprint=space_fingerprint(space), space=space.to_dict(), features=searcher.core.features,
        budget_slack=searcher.config.budget_slack, episodes=searcher.episodes, seed=searcher.seed,
        model=meta.pop("model", None), dataset=meta.pop("dataset", None), supernet=meta.pop("supernet", None),
        extra=meta,
    )  # fmt: skip
    side = write_json_atomic(sidecar_path(path), info.to_dict())
    return path, side


def rollout(model: BaseAlgorithm, core: EpisodeCore, target: float | None = None) -> dict[str, int]:
    """One deterministic episode of ``model`` over ``core`` at ``target``: the projected counts.

    Raises:
        AutoPruneError: ``target`` outside the core's target range (or given to a fixed-target core).
    """
    if target is not None:
        core.set_target(target)
    core.reset()
    while not core.done:  # the policy's mean action: a deterministic predict draws from no generator
        action, _ = model.predict(core.observation(), deterministic=True)
        core.step(float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], 0.0, 1.0)))
    counts, _ = core.final_counts()
    return counts


@dataclass
class SavedPolicy:
    """A policy loaded from its zip and sidecar (:meth:`load`), ready to answer targets.

    Attributes:
        path: The zip.
        info: Its sidecar.
        model: The SB3 model (its policy network; no buffers).
    """

    path: Path
    info: PolicyInfo
    model: Any

    @classmethod
    def load(cls, path: str | Path) -> SavedPolicy:
        """Load ``path`` (a ``policy.zip``) and its sidecar, on the CPU.

        Raises:
            AutoPruneError: a missing zip or sidecar, a sidecar autoprune did not write, an unknown searcher.
        """
        from stable_baselines3 import DDPG, PPO, SAC, TD3


        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            raise AutoPruneError(f"--policy {path}: no such file; pass the policy.zip of an `autoprune search "
                                 "--target-range` run folder")
        if not side.is_file():
            raise AutoPruneError(f"--policy {path}: its sidecar {side.name} is missing beside it (it says what the "
                                 "policy was trained for); copy both files together")
        info = PolicyInfo.from_dict(read_json(side, "policy sidecar"), str(side))
        classes: dict[str, Any] = {"ddpg": DDPG, "td3": TD3, "sac": SAC, "ppo": PPO}
        if info.searcher not in classes:
            raise AutoPruneError(f"{side}: searcher {info.searcher!r} is not an RL searcher ({', '.join(classes)})")
        try:
            model = classes[info.searcher].load(path, device="cpu", print_system_info=False)
        except Exception as exc:  # SB3 raises whatever its unzipping and unpickling raise
            raise AutoPruneError(f"--policy {path}: cannot load it as a {info.searcher} policy ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}); save it again with `autoprune search --target-range`") from None
        return cls(path, info, model)

    def check_space(self, space: SearchSpace) -> None:
        """Refuse a search space other than the one the policy was trained on (its actions would mean else).

        Raises:
            AutoPruneError: another metric, other groups or other choices, naming the first difference.
        """
        if space_fingerprint(space) == self.info.fingerprint:
            return
        mine = self.info.space
        if space.metric != mine.get("metric"):
            diff = f"its budget metric is {mine.get('metric')}, not {space.metric}"
        else:
            theirs = {g.name: list(g.choices) for g in space.groups}
            trained = {name: list(g.get("counts", [])) for name, g in mine.get("groups", {}).items()}
            names = [n for n in [*trained, *theirs] if trained.get(n) != theirs.get(n)]
            first = names[0] if names else "?"
            if not names and space.round_to == mine.get("round_to"):
                raise AutoPruneError(f"{sidecar_path(self.path)} does not match the fingerprint it records (was it "
                                     "edited?): restore the file written beside the policy")
            diff = (f"group {first!r} has choices {trained.get(first)} in the policy's space but {theirs.get(first)} "
                    "here") if names else f"rounding {space.round_to}, not {mine.get('round_to')}"
        raise AutoPruneError(f"{self.path} was trained on another search space ({diff}): answer over the space "
                             f"it was trained on (model {self.info.model or '?'}, supernet "
                             f"{self.info.supernet or '?'}; policy.json holds the space), or train a policy for "
                             "this one")

    def check_target(self, target: float, option: str = "target") -> float:
        """``target`` as a float when it lies in the trained range.

        Raises:
            AutoPruneError: outside the range, naming the value and the range.
        """
        low, high = self.info.target_range
        if not low - 1e-9 <= float(target) <= high + 1e-9:
            trained = f"{low:g}:{high:g}" if high > low else f"{low:g} only"
            raise AutoPruneError(f"{option} {target:g} is outside the range {self.path} was trained on ({trained}): "
                                 f"ask for a target in it, or train a policy over a range that holds {target:g} "
                                 "with --target-range")
        return float(target)

    def answer(self, space: SearchSpace, target: float) -> dict[str, int]:
        """The policy's deterministic candidate over ``space`` at ``target`` (checked against both first).

        Raises:
            AutoPruneError: another space, or ``target`` outside the trained range.
        """
        import dataclasses

        self.check_space(space)
        target = self.check_target(target)
        low, high = self.info.target_range
        if self.info.conditioned:
            core = EpisodeCore(dataclasses.replace(space, target=high), budget_slack=self.info.budget_slack,
                               target_range=(low, high))
            return rollout(self.model, core, target)
        core = EpisodeCore(dataclasses.replace(space, target=high), budget_slack=self.info.budget_slack)
        return rollout(self.model, core)
