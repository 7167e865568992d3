"""What every RL searcher shares: the episode core, rewards with a moving-average baseline, the SB3 model's
construction and training, RNGs of its own.

An RL searcher proposes one candidate per episode of :class:`~autoprune.envs.LayerPruningEnv`'s episode
logic (the same :class:`~autoprune.envs.EpisodeCore`, so the same mapping, snapping and budget clipping);
the runner evaluates it and :meth:`tell` turns the result into the episode's reward.

Budget-conditioned (``target_range``): every episode draws its target from the range (searcher's RNG,
recorded in the trial's ``info["target"]`` so that a resumed run replays it), its observations end with
that target, and rewards are compared with a baseline per slice of the range (a candidate at 0.7 of the
MACs is not a better episode than one at 0.3 for being more accurate). ``save_policy`` writes the agent
(SB3's zip and a JSON sidecar, :mod:`autoprune.search.rl.policy`) when the search ends; :meth:`answer`
gives the policy's deterministic candidate for one target.
"""

from __future__ import annotations

import abc
import dataclasses
import random
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

from autoprune.envs import EpisodeCore, LayerPruningEnv, get_reward, parse_target_range, replay
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search.base import Proposal, Searcher, Trial
from autoprune.search_spaces import SearchSpace

_INTS = ("warmup", "batch_size", "buffer_size", "episodes_per_update", "gradient_steps")
_FLOATS = ("gamma", "baseline_alpha", "noise", "noise_decay", "learning_rate", "tau", "budget_slack")
_OPTIONAL = ("gradient_steps", "budget_slack")
#: Slices of a target range with a reward baseline each (budget-conditioned searchers).
BASELINE_BINS = 4

Credit = Literal["every_step", "final"]
CREDITS: tuple[str, ...] = ("every_step", "final")


@dataclass(frozen=True)
class RLConfig:
    """Settings of an RL searcher (recorded in ``report.json`` through :meth:`RLSearcher.state`).

    Attributes:
        reward: ``accuracy`` (budget enforced by clipping), ``accuracy_log_macs`` or ``accuracy_log_latency``.
        warmup: Episodes of uniformly random actions before the policy acts and learns (AMC: 100).
        credit: ``every_step``: every transition of an episode gets its final reward minus the baseline
            (AMC); ``final``: only the last one does, and bootstrapping with ``gamma`` carries it back.
        gamma: Discount (AMC: 1.0).
        baseline_alpha: Weight of the newest reward in the moving-average baseline (AMC: 0.5).
        noise: Initial standard deviation of the truncated normal exploration noise (DDPG/TD3; AMC: 0.5).
        noise_decay: Per-episode decay of that deviation after warm-up (AMC: 0.95).
        learning_rate: Adam learning rate of actor and critic (policy and value for PPO).
        batch_size: Transitions per gradient step (AMC: 64).
        gradient_steps: Gradient steps after each episode (``None``: one per searched group, as AMC).
        net_arch: Hidden layer widths of the networks (AMC: 300, 300).
        tau: Soft update of the target networks (off-policy; AMC: 0.01).
        buffer_size: Replay buffer size in transitions (off-policy).
        episodes_per_update: Episodes per PPO rollout (PPO only).
        budget_slack: Lower clipping of the episodes (see :class:`~autoprune.envs.EpisodeCore`).
        extra: Further keyword arguments for the SB3 model's constructor (e.g. ``policy_delay`` of TD3).
        target_range: ``(low, high)`` or ``"low:high"``: train one budget-conditioned agent over these
            targets of the space's metric (``None``: the space's own target only).
        save_policy: Write the agent here (SB3's zip, with a ``.json`` sidecar) when the search ends.
        policy_meta: Entries added to that sidecar (the command adds model, dataset and supernet).
    """

    reward: str = "accuracy"
    warmup: int = 10
    credit: Credit = "every_step"
    gamma: float = 1.0
    baseline_alpha: float = 0.5
    noise: float = 0.5
    noise_decay: float = 0.95
    learning_rate: float = 1e-3
    batch_size: int = 64
    gradient_steps: int | None = None
    net_arch: tuple[int, ...] = (300, 300)
    tau: float = 0.01
    buffer_size: int = 10_000
    episodes_per_update: int = 8
    budget_slack: float | None = 0.02
    extra: dict[str, Any] = field(default_factory=dict)
    target_range: tuple[float, float] | None = None
    save_policy: str | None = None
    policy_meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._coerce()
        if self.target_range is not None:
            object.__setattr__(self, "target_range", parse_target_range(self.target_range))
        if self.save_policy is not None:
            object.__setattr__(self, "save_policy", str(self.save_policy))
        get_reward(self.reward)
        if self.credit not in CREDITS:
            raise AutoPruneError(f"credit={self.credit!r} must be one of {', '.join(CREDITS)}")
        checks = {
            "warmup": self.warmup >= 0, "gamma": 0.0 <= self.gamma <= 1.0,
            "baseline_alpha": 0.0 < self.baseline_alpha <= 1.0, "noise": self.noise >= 0.0,
            "noise_decay": 0.0 < self.noise_decay <= 1.0, "learning_rate": self.learning_rate > 0.0,
            "batch_size": self.batch_size >= 1, "buffer_size": self.buffer_size >= self.batch_size,
            "episodes_per_update": self.episodes_per_update >= 1, "tau": 0.0 < self.tau <= 1.0,
            "gradient_steps": self.gradient_steps is None or self.gradient_steps >= 0,
        }  # fmt: skip
        for name, ok in checks.items():
            if not ok:
                raise AutoPruneError(
                    f"RL option {name}={getattr(self, name)!r} is out of range; see autoprune.search.rl.RLConfig"
                )

    def _coerce(self) -> None:
        """Accept numbers given as text (``--option warmup=20`` on a command line)."""
        kinds: dict[str, type] = {n: int for n in _INTS} | {n: float for n in _FLOATS}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if name in _OPTIONAL and (value is None or str(value).lower() == "none"):
                object.__setattr__(self, name, None)
                continue
            try:
                object.__setattr__(self, name, kind(value))
            except (TypeError, ValueError):
                raise AutoPruneError(f"RL option {name}={value!r} must be a {kind.__name__}") from None
        arch = self.net_arch
        try:
            widths = tuple(int(w) for w in (arch.split(",") if isinstance(arch, str) else arch))
        except (TypeError, ValueError):
            widths = ()
        if not widths or min(widths) < 1:
            raise AutoPruneError(f"RL option net_arch={arch!r} must be hidden layer widths, e.g. (300, 300) or '64,64'")
        object.__setattr__(self, "net_arch", widths)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Episode:
    """One rolled-out episode: observations before each step (and after the last), actions in [0, 1]."""

    counts: dict[str, int]
    observations: list[np.ndarray]
    actions: list[float]
    extras: dict[str, Any] = field(default_factory=dict)
    target: float | None = None


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block on random generators of its own, in the state ``seed`` gives them; the caller's come back.

    SB3 draws from Python's, NumPy's and torch's global CPU generators. The block gets generators built from
    ``seed`` (what ``random.seed``, ``np.random.seed`` and ``torch.manual_seed`` would give, without
    seeding anything globally: CUDA generators are never touched), so the searcher's draws depend on its own
    seed only, whatever else runs between ask and tell; the global states are restored afterwards.
    """
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.setstate(random.Random(seed).getstate())
    np.random.set_state(np.random.RandomState(seed).get_state())
    torch.set_rng_state(torch.Generator().manual_seed(seed).get_state())
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


def _never(counts: dict[str, int]) -> EvalResult:
    raise AutoPruneError("internal error: an RL searcher's template env evaluated a candidate")


class RLSearcher(Searcher):
    """Base of the Stable-Baselines3 searchers: one episode per :meth:`ask`, learning in :meth:`tell`.

    Subclasses build the SB3 model (:meth:`_build_model`), choose actions (:meth:`_act`) and learn from a
    rewarded episode (:meth:`_learn_episode`).

    Args:
        space: The search space.
        seed: Seeds the searcher, its networks and its exploration.
        **options: Fields of :class:`RLConfig`.
    """

    algorithm: str = "rl"
    model_based = True
    asks_ahead = True  # several episodes of one policy, told in the order asked (parallel episodes)
    fast_options: ClassVar[dict[str, Any]] = {"warmup": 2, "batch_size": 16, "net_arch": (32, 32)}

    def __init__(self, space: SearchSpace, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed)
        self.config = RLConfig(**options)
        self.reward_fn = get_reward(self.config.reward)
        c = self.config
        self.core = EpisodeCore(space, budget_slack=c.budget_slack, target_range=c.target_range)
        self.space = self.core.space  # conditioned: the range's upper end, which every episode meets
        self.template_env = LayerPruningEnv(space, _never, budget_slack=c.budget_slack, target_range=c.target_range)
        self.episodes = 0
        self.baseline: float | None = None
        self.baselines: dict[int, float] = {}  # per slice of the target range (one slice without a range)
        self.rewards: list[float] = []
        self._pending: deque[Episode] = deque()  # asked, not yet told, in the order asked
        with isolated_rng(seed):  # the networks' initial weights come from the searcher's seed
            self.model: Any = self._build_model()

    @classmethod
    def option_names(cls) -> list[str]:
        """The fields of :class:`RLConfig`."""
        return list(RLConfig.__dataclass_fields__)

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _build_model(self) -> BaseAlgorithm:
        """The SB3 model over :attr:`template_env` (its spaces only; it never steps); see :meth:`_sb3_model`."""

    @abc.abstractmethod
    def _act(self, obs: np.ndarray, episode: Episode) -> float:
        """The action in [0, 1] for ``obs`` after warm-up (may record extras in ``episode``)."""

    @abc.abstractmethod
    def _learn_episode(self, episode: Episode, rewards: list[float]) -> None:
        """Learn from an episode with one reward per transition."""

    def _sb3_model(self, algorithm: Callable[..., BaseAlgorithm], **kwargs: Any) -> BaseAlgorithm:
        """An SB3 ``algorithm`` over the template env with the shared settings, silent, on the CPU.

        SB3 is given no seed of its own (it would seed the global generators): the model is built inside
        :func:`isolated_rng` from the searcher's seed.
        """
        c = self.config
        model = algorithm(
            "MlpPolicy", self.template_env, learning_rate=c.learning_rate, gamma=c.gamma,
            policy_kwargs={"net_arch": list(c.net_arch)}, seed=None, device="cpu", **kwargs, **c.extra,
        )  # fmt: skip
        model.set_logger(Logger(folder=None, output_formats=[]))
        return model

    def _train(self, **kwargs: Any) -> None:
        """The SB3 model's own ``train()``, on generators seeded from the searcher's stream."""
        with isolated_rng(self._seed()):
            self.model.train(**kwargs)

    # ------------------------------------------------------------------ ask / tell
    @property
    def warming_up(self) -> bool:
        """Whether the next episode's actions are uniformly random (warm-up) rather than the policy's."""
        return self.episodes < self.config.warmup

    def _seed(self) -> int:
        return int(self.rng.integers(2**31 - 1))

    def ask(self) -> Proposal:
        info: dict[str, Any] = {}
        if self.core.target_range is not None:
            target = float(self.rng.uniform(*self.core.target_range))
            self.core.set_target(target)
            info["target"] = target
        self.core.reset()
        episode = Episode({}, [], [], target=info.get("target"))
        while not self.core.done:
            obs = self.core.observation()
            action = float(self.rng.uniform()) if self.warming_up else self._act(obs, episode)
            episode.observations.append(obs)
            episode.actions.append(float(np.clip(action, 0.0, 1.0)))
            self.core.step(action)
        episode.observations.append(self.core.observation())
        episode.counts, _ = self.core.final_counts()
        self._pending.append(episode)
        return Proposal(dict(episode.counts), info)

    def _learn(self, trial: Trial) -> None:
        target = trial.info.get("target") if self.core.conditioned else None
        episode = next((e for e in self._pending if e.counts == trial.counts and e.target == target), None)
        if episode is not None:  # told in the order asked: the first pending one, unless told what it never asked
            self._pending.remove(episode)
        else:
            episode = self._replayed(trial.counts, target)
        self.episodes += 1
        if trial.state == "failed" or trial.result is None:
            return  # nothing to learn: the episode is dropped, the exploration schedule moves on
        reward = float(self.reward_fn(trial.result, self._episode_space(target)))
        self.rewards.append(reward)
        key = self._slice(target)
        old = self.baselines.get(key)
        self.baseline = reward if old is None else old + self.config.baseline_alpha * (reward - old)
        self.baselines[key] = self.baseline
        advantage = reward - self.baseline
        steps = len(episode.actions)
        every = self.config.credit == "every_step"
        rewards = [advantage] * steps if every else [0.0] * (steps - 1) + [advantage]
        self._learn_episode(episode, rewards)

    def _replayed(self, counts: dict[str, int], target: float | None = None) -> Episode:
        """An episode that yields ``counts`` (for trials this searcher did not propose in this process).

        Budget-conditioned: at the trial's recorded ``target`` (the range's upper end when none is recorded).
        """
        if self.core.target_range is not None:
            self.core.set_target(self.core.target_range[1] if target is None else float(target))
        observations, actions = replay(self.core, counts)
        return Episode(dict(counts), observations, actions, target=target)

    def _episode_space(self, target: float | None) -> SearchSpace:
        """The space at an episode's target (rewards that read the budget see that episode's)."""
        if target is None or target == self.space.target:
            return self.space
        return dataclasses.replace(self.space, target=float(target))

    def _slice(self, target: float | None) -> int:
        """Which reward baseline an episode at ``target`` is compared with (0 without a target range)."""
        if target is None or self.core.target_range is None:
            return 0
        low, high = self.core.target_range
        return 0 if high <= low else min(int((target - low) / (high - low) * BASELINE_BINS), BASELINE_BINS - 1)

    def answer(self, target: float | None = None) -> dict[str, int]:
        """The policy's deterministic candidate (no exploration) at ``target`` (default: the space's own).

        Raises:
            AutoPruneError: ``target`` outside the searcher's target range (or given without one).
        """
        from autoprune.search.rl.policy import rollout

        core = EpisodeCore(self.space, budget_slack=self.config.budget_slack, target_range=self.core.target_range)
        return rollout(self.model, core, target)

    def close(self) -> None:
        """Write the agent to ``save_policy`` (when set): SB3's zip and its JSON sidecar."""
        if self.config.save_policy is not None:
            from autoprune.search.rl.policy import save_policy

            save_policy(self, self.config.save_policy, meta=self.config.policy_meta)

    def restore(self, trials: Sequence[Trial]) -> None:
        """Rebuild the agent from an earlier run's trials: replay each as an episode, learn as :meth:`tell` did.

        Approximate: the recorded candidates are replayed with the actions that map exactly onto their
        counts (the continuous actions before snapping are not recorded), the networks are retrained on
        those transitions with fresh random batches (not bit-identical weights), and the searcher's RNG
        does not replay the draws of the earlier proposals (it continues from a stream seeded by the seed and
        the number of restored trials, so a resumed search is reproducible but differs from an uninterrupted
        one). Exact: episode count (hence warm-up and noise schedule), reward baseline, replay buffer
        contents up to the snapping, history and best trial.
        """
        for trial in trials:
            self._pending.clear()
            self.tell(trial)
        self.rng = np.random.default_rng([self.seed, len(trials)])

    def state(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "episodes": self.episodes,
            "baseline": self.baseline,
            **({"baselines": {str(k): v for k, v in sorted(self.baselines.items())},
                "target_range": list(self.core.target_range)} if self.core.target_range is not None else {}),
            "last_rewards": self.rewards[-5:],
            "config": self.config.to_dict(),
        }
