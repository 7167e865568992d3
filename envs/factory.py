"""One call from a model, a dataset and a budget (or a saved supernet) to a ready pruning environment.

:func:`make_env` loads the data, loads the supernet file (or trains one, as ``autoprune search`` does
without ``--supernet``), resolves the search space, sets the budget, builds the
:class:`~autoprune.evaluate.SupernetEvaluator`, and returns the environment made by ``gymnasium.make``
with these settings. The Gymnasium entry points below take the same settings, so
``gymnasium.make("autoprune/LayerPruning-v0", supernet="runs/sn/supernet.pt")`` works too, as does the
explicit form ``gymnasium.make(..., space=space, evaluator=evaluator)``.

Episode length: a :class:`LayerPruningEnv` episode has one step per searched group, which the registry
cannot know before the space exists; its entry point wraps the environment in a
:class:`~gymnasium.wrappers.TimeLimit` of exactly that length, so ``env.spec.max_episode_steps`` is the
number of searched groups. ``autoprune/RatioVector-v0`` is registered with ``max_episode_steps=1``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from gymnasium.wrappers import TimeLimit

from autoprune.data.splits import default_val_batch_size
from autoprune.envs.episode import parse_target_range
from autoprune.envs.pruning_envs import LayerPruningEnv, RatioVectorEnv, _PruningEnv
from autoprune.envs.rewards import Reward, get_reward
from autoprune.errors import AutoPruneError
from autoprune.evaluate import SupernetEvaluator
from autoprune.search_spaces import SearchSpace, space_from_dict
from autoprune.search_spaces.budget import check_target

#: Short names of the environments (``make_env``'s ``env``) and their Gymnasium ids.
ENV_NAMES: dict[str, str] = {"layer": "autoprune/LayerPruning-v0", "vector": "autoprune/RatioVector-v0"}


@dataclass(frozen=True)
class EnvConfig:
    """Everything :func:`make_env` needs, validated once. Paths may be ``str`` or :class:`~pathlib.Path`.

    Attributes:
        model: Model name (``autoprune models``); default: the one recorded in the ``supernet`` file,
            else ``resnet20``.
        dataset: Dataset name; default: the one recorded in the ``supernet`` file, else ``digits``.
        data_dir: Dataset folder (not needed for ``digits``).
        image_size: Image side to resize to (``None``: the dataset's own).
        download: Let torchvision download a missing dataset.
        supernet: A ``supernet.pt`` written by ``autoprune supernet`` / ``autoprune search`` (or by
            ``save_supernet``). ``None``: build one here, which trains (see ``checkpoint``).
        checkpoint: Trained dense weights to build the supernet from; ``None`` (and no ``supernet``): train
            the dense model for ``train_epochs`` first.
        save_supernet: Where to write the supernet built here (resumed if it exists); pass it as
            ``supernet`` next time to skip the training.
        space: Search space: a bundled name, a YAML path or ``"auto"``; default: the space recorded in the
            supernet file, else the bundled space of the model, else ``auto``.
        target_macs: Budget: fraction of the dense MACs to keep (default 0.5 when no other budget is given).
        target_params: Budget on parameters instead (fraction kept).
        target_range: ``(low, high)`` or ``"low:high"``: budget-conditioned environments (see
            :class:`~autoprune.envs.LayerPruningEnv`); the range is of MACs, or of parameters when
            ``target_params`` is given (a given target must lie in the range; default: its upper end).
        reward: ``accuracy``, ``accuracy_log_macs``, ``accuracy_log_latency`` or a callable
            ``(EvalResult, SearchSpace) -> float`` (a module-level function, to stay picklable).
        fidelity: Validation batches per evaluation (``None``: all).
        budget_slack: See :class:`~autoprune.envs.episode.EpisodeCore`.
        bn_batches: Calibration batches (64 training images each) for adaptive BatchNorm per candidate.
        latency_batch_size: Measure every candidate's latency at this batch size (needed by the reward
            ``accuracy_log_latency``); ``None``: no measurement.
        val_batch_size: Validation batch size, one fidelity unit (default as ``autoprune search``: 256,
            smaller for small validation sets so that there are at least 8 batches).
        train_epochs: Dense training epochs when neither ``supernet`` nor ``checkpoint`` is given.
        supernet_epochs: Sandwich epochs when no ``supernet`` is given.
        seed: Seeds the training (when there is any) and the calibration batches.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        progress: Show progress bars while training.

    Raises:
        AutoPruneError: a setting out of range, or two budgets.
    """

    model: str | None = None
    dataset: str | None = None
    data_dir: str | Path | None = None
    image_size: int | None = None
    download: bool = False
    supernet: str | Path | None = None
    checkpoint: str | Path | None = None
    save_supernet: str | Path | None = None
    space: str | Path | None = None
    target_macs: float | None = None
    target_params: float | None = None
    target_range: tuple[float, float] | str | None = None
    reward: str | Reward = "accuracy"
    fidelity: int | None = None
    budget_slack: float | None = 0.02
    bn_batches: int = 10
    latency_batch_size: int | None = None
    val_batch_size: int | None = None
    train_epochs: int = 10
    supernet_epochs: int = 3
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    def __post_init__(self) -> None:
        if self.target_macs is not None and self.target_params is not None:
            raise AutoPruneError(
                f"give one budget, not target_macs={self.target_macs!r} and target_params={self.target_params!r}"
            )
        if self.target_macs is not None:
            check_target(self.target_macs, "macs")
        if self.target_params is not None:
            check_target(self.target_params, "params")
        if self.supernet is not None and self.checkpoint is not None:
            raise AutoPruneError(
                f"supernet={str(self.supernet)!r} already holds the trained weights; checkpoint="
                f"{str(self.checkpoint)!r} is for building a new supernet: give one of them"
            )
        if self.target_range is not None:
            low, high = parse_target_range(self.target_range)
            object.__setattr__(self, "target_range", (low, high))
            given = self.target_params if self.target_params is not None else self.target_macs
            if given is not None and not low <= given <= high:
                raise AutoPruneError(f"target {given!r} lies outside target_range={low:g}:{high:g}; give one inside "
                                     "it, or leave it out (the range's upper end)")
        get_reward(self.reward)  # an unknown name fails here, with the valid ones
        for name, low in (("fidelity", 1), ("val_batch_size", 1), ("bn_batches", 0), ("latency_batch_size", 1),
                          ("train_epochs", 0), ("supernet_epochs", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < low):
                raise AutoPruneError(f"{name}={value!r} must be an integer >= {low}")

    @property
    def budget(self) -> tuple[str, float]:
        """The budget metric and target."""
        if self.target_params is not None:
            return "params", float(self.target_params)
        if self.target_macs is None and isinstance(self.target_range, tuple):
            return "macs", self.target_range[1]
        return "macs", 0.5 if self.target_macs is None else float(self.target_macs)


def _config(settings: dict[str, Any], base: EnvConfig | None = None) -> EnvConfig:
    valid = [f.name for f in dataclasses.fields(EnvConfig)]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise AutoPruneError(
            f"unknown environment setting(s) {', '.join(map(repr, unknown))}; use {', '.join(valid)} "
            "(or pass space= and evaluator= objects instead)"
        )
    return dataclasses.replace(base, **settings) if base is not None else EnvConfig(**settings)


def _device(name: str) -> torch.device:
    from autoprune._device import resolve_device

    return resolve_device(name, option="device=")


def build_parts(config: EnvConfig) -> tuple[SearchSpace, SupernetEvaluator]:
    """The search space (with the config's budget) and the supernet evaluator an environment runs on.

    Loads ``config.supernet``, or builds a supernet as ``autoprune search`` does without ``--supernet``
    (trains the dense model unless ``config.checkpoint`` is given, then sandwich-trains it).

    Raises:
        AutoPruneError: missing or foreign files, unknown names, or an unreachable budget.
    """
    from autoprune.data import load_dataset
    from autoprune.engine.structure import ModelStructure
    from autoprune.models import build_model, load_checkpoint_into
    from autoprune.models.checkpoint import read_checkpoint
    from autoprune.pipelines.oneshot import build_supernet, resolve_space
    from autoprune.seed import seed_everything
    from autoprune.supernet import Supernet, SupernetConfig
    from autoprune.training import TrainConfig, train

    device = _device(config.device)
    meta: dict[str, Any] = {}
    if config.supernet is not None:
        if not Path(config.supernet).is_file():
            raise AutoPruneError(f"supernet={str(config.supernet)!r} is not a file; train one with `autoprune "
                                 "supernet`, or pass supernet=None to build one here")
        meta = dict(read_checkpoint(config.supernet)[1])
    model_name = config.model or str(meta.get("model", "resnet20"))
    dataset = config.dataset or str(meta.get("dataset", "digits"))
    splits = load_dataset(dataset, config.data_dir, download=config.download, image_size=config.image_size)
    input_shape = splits.input_shape()
    if config.supernet is not None:
        model = build_model(model_name, num_classes=splits.num_classes, in_channels=splits.in_channels)
        supernet, meta = Supernet.load(config.supernet, model)
        if config.space is not None or "space" not in meta:
            space = resolve_space(supernet.structure, model_name, config.space, None)
        else:
            space = space_from_dict(meta["space"], supernet.structure)
    else:
        seed_everything(config.seed)
        model = build_model(model_name, num_classes=splits.num_classes, in_channels=splits.in_channels)
        if config.checkpoint is not None:
            load_checkpoint_into(model, config.checkpoint)
        else:
            train(model, splits.train_loader(128, seed=config.seed), TrainConfig(epochs=config.train_epochs),
                  val_loader=splits.val_loader(), device=device, progress=config.progress)
        space = resolve_space(ModelStructure(model, input_shape), model_name, config.space, None)
        run = build_supernet(
            model, input_shape, space, splits.train_loader(128, seed=config.seed),
            SupernetConfig(epochs=config.supernet_epochs, seed=config.seed),
            calibration=splits.calibration_loader(seed=config.seed),
            checkpoint=None if config.save_supernet is None else Path(config.save_supernet), device=device,
            progress=config.progress,
            meta={"model": model_name, "dataset": dataset, "num_classes": splits.num_classes,
                  "in_channels": splits.in_channels, "image_size": list(splits.image_size)},
        )  # fmt: skip
        supernet, space = run.supernet, run.space
    metric, target = config.budget
    space = dataclasses.replace(space, metric=metric, target=target, latency_table=None)
    n_val = len(splits.val)  # type: ignore[arg-type]
    val_batch_size = config.val_batch_size or default_val_batch_size(n_val)
    evaluator = SupernetEvaluator(
        supernet, splits.val_loader(val_batch_size), splits.calibration_loader(seed=config.seed),
        bn_batches=config.bn_batches, latency_batch_size=config.latency_batch_size, device=device,
    )  # fmt: skip
    return space, evaluator


def _create(cls: type[_PruningEnv], kwargs: dict[str, Any]) -> _PruningEnv:
    render_mode = kwargs.pop("render_mode", None)
    if render_mode is not None:  # a TypeError, as from a constructor without render_mode: SB3's make_vec_env
        # asks for "rgb_array" first and retries without it on a TypeError
        raise TypeError(f"{cls.__name__} does not render (render_modes: []): got an unexpected keyword argument "
                        f"'render_mode' ({render_mode!r})")
    if "space" in kwargs or "evaluator" in kwargs:
        return cls(**kwargs)
    base = kwargs.pop("config", None)
    config = _config(kwargs, base)
    space, evaluator = build_parts(config)
    return cls(space, evaluator, reward=config.reward, fidelity=config.fidelity, budget_slack=config.budget_slack,
               target_range=config.target_range)


def layer_pruning_entry(**kwargs: Any) -> gymnasium.Env[Any, Any]:
    """Gymnasium entry point of ``autoprune/LayerPruning-v0``.

    Takes either the environment's own arguments (``space``, ``evaluator``, ``reward``, ``fidelity``,
    ``budget_slack``) or :class:`EnvConfig` settings (``config=`` and/or its fields). Returns the
    environment in a :class:`~gymnasium.wrappers.TimeLimit` of its episode length (one step per searched
    group), so ``env.spec.max_episode_steps`` says it; the last step is then both terminated and truncated,
    as for any Gymnasium environment that ends exactly at its time limit.
    """
    env = _create(LayerPruningEnv, dict(kwargs))
    return TimeLimit(env, max_episode_steps=env.episode_length)


def ratio_vector_entry(**kwargs: Any) -> gymnasium.Env[Any, Any]:
    """Gymnasium entry point of ``autoprune/RatioVector-v0`` (same arguments as :func:`layer_pruning_entry`;
    the registration's ``max_episode_steps=1`` gives its one-step limit)."""
    return _create(RatioVectorEnv, dict(kwargs))


def make_env(env: str = "layer", config: EnvConfig | None = None, **settings: Any) -> gymnasium.Env[Any, Any]:
    """A ready pruning environment from a model, a dataset and a budget, or from a saved supernet.

    Example::

        env = make_env("layer", supernet="runs/sn/supernet.pt", target_macs=0.5, reward="accuracy_log_macs")
        env = make_env("vector", model="resnet20", dataset="digits", train_epochs=10, supernet_epochs=3,
                       save_supernet="runs/sn/supernet.pt")   # trains first; reuse the file next time

    The environment comes from ``gymnasium.make`` with the validated :class:`EnvConfig` as its only
    argument, so ``env.spec`` is small and ``env.spec.make()`` (or a ``SubprocVecEnv`` worker calling
    ``make_env``) rebuilds it from the same settings; without a ``supernet`` file that means training again.

    Args:
        env: ``layer`` (:class:`LayerPruningEnv`, one step per searched group), ``vector``
            (:class:`RatioVectorEnv`, one step) or a Gymnasium id of :data:`ENV_NAMES`.
        config: Settings to start from; ``settings`` override its fields.
        **settings: :class:`EnvConfig` fields.

    Returns:
        The environment, wrapped by Gymnasium (``env.unwrapped`` is the autoprune environment) with a time
        limit of its episode length.

    Raises:
        AutoPruneError: unknown environment or setting, bad values, missing files, unreachable budget.
    """
    env_id = ENV_NAMES.get(env, env)
    if env_id not in ENV_NAMES.values():
        raise AutoPruneError(f"unknown environment {env!r}; use one of {', '.join(ENV_NAMES)} or its Gymnasium id")
    return gymnasium.make(env_id, config=_config(settings, config))
