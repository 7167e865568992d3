"""Optuna samplers as searchers: ``tpe``, ``cmaes``, ``gp``, ``qmc`` and the multi-objective ``nsga2``.

Each searcher drives one Optuna study through the ask-and-tell API:

- **Sampling**: one float keep ratio per group, in the range of the group's choices. Floats keep the order
  of the choices (a categorical index would hide that 24 channels lie between 16 and 32 from TPE, and
  CMA-ES and the GP need numbers), and they are what :meth:`SearchSpace.project` takes.
- **Constraint pruning**: the sampled ratios are projected onto the budget before anything is evaluated,
  so an infeasible candidate never reaches the evaluator. Optuna keeps the raw sample as the trial's
  params and is told the score of its projection, a deterministic function of the sample; the projected
  ratios and counts are user attributes (``keep_ratios``, ``counts``), and ``raw_cost`` is the budget
  metric of the raw sample. ``nsga2`` can also mark raw samples beyond the budget as constraint
  violations (``raw_constraint=True``; see :class:`NSGA2Searcher`).
- **Dynamic pruning**: :meth:`OptunaSearcher.should_prune` reports the accuracy at each fidelity rung to
  the trial and asks the pruner (``none``, ``median``, ``sha``, ``hyperband``); such trials are told PRUNED.
- **Subproblem pruning**: repeated candidates are served by the runner's memo and the evaluator's cache;
  the trial is still told their score.
- **Sorting**: the study starts with promising candidates (``enqueue_trial``): the widest uniform keep
  ratio within the budget, then the caller's ``seed_ratios`` (e.g. from a sensitivity analysis).
- **Workers**: with a shared ``storage`` several processes run :func:`run_search` over one study; the
  total number of trials is exact (see :mod:`autoprune.search.optuna_storage`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import optuna
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search.base import Proposal, Searcher, Trial
from autoprune.search.optuna_liveness import (
    WORKER_ATTR,
    Heartbeat,
    fail_dead_local,
    fail_stale,
    heartbeat_interval,
    orphaned,
    worker_tag,
)
from autoprune.search.optuna_storage import StudyLock, budget_count, make_pruner, open_storage, quiet_optuna
from autoprune.search_spaces import SearchSpace

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


class OptunaSearcher(Searcher):
    """A searcher backed by an Optuna study (subclasses choose the sampler).

    Args:
        space: The search space.
        seed: Seeds the sampler; same seed, same proposals (in one process).
        storage: An Optuna storage URL shared by all workers (``sqlite:///run/study.db``,
            ``postgresql://...``, ``journal:PATH``); ``None``: a study in memory.
        study_name: The study in ``storage`` (workers and resumed runs use the same name).
        load_if_exists: Continue an existing study of that name (resume, extra workers); if False, an
            existing study is an error.
        pruner: Early stopping of weak trials at the fidelity rungs: ``none``, ``median``, ``sha``, ``hyperband``.
        total_trials: Trials of the whole study, all workers together; ``ask`` returns None once the study
            holds that many. ``None``: the runner's trial budget (set through :meth:`plan_budget`).
        seed_ratios: Keep-ratio vectors (group name -> ratio; missing groups whole) to evaluate first,
            after the uniform candidate.
        seed_uniform: Evaluate the widest uniform keep ratio within the budget first.
        n_startup_trials: Random trials before the sampler's model takes over (sampler default if None).
        heartbeat_interval: Seconds between heartbeats of a running trial in a database storage (0: off).
            A trial whose worker stopped beating for ``grace_period`` seconds (default 2 intervals) is
            failed and re-queued, at most ``max_retry`` times.
        grace_period: See ``heartbeat_interval``.
        max_retry: See ``heartbeat_interval``.

    Raises:
        AutoPruneError: unknown pruner or group names, malformed ratios, a bad storage URL or an existing
            study when ``load_if_exists`` is False.
    """

    name = "optuna"
    study_based = True
    model_based = True
    fast_options: ClassVar[Mapping[str, Any]] = {"n_startup_trials": 2}
    #: The Optuna sampler class and its fixed keyword arguments (besides ``seed``).
    sampler_class: ClassVar[Callable[..., optuna.samplers.BaseSampler]] = optuna.samplers.RandomSampler
    sampler_options: ClassVar[Mapping[str, Any]] = {}
    #: Random start-up trials before the sampler's model takes over, when ``n_startup_trials`` is not given;
    #: None for samplers without that phase (the option is then not passed to them).
    default_startup: ClassVar[int | None] = None

    @classmethod
    def check_pruner(cls, pruner: str) -> optuna.pruners.BasePruner:
        """The Optuna pruner named ``pruner``, refused when unknown or when this searcher is multi-objective.

        Raises:
            UnknownNameError: an unknown pruner name (the valid ones listed).
            AutoPruneError: a pruner other than ``none`` with a multi-objective searcher.
        """
        made = make_pruner(pruner)
        if cls.multi_objective and pruner != "none":
            raise AutoPruneError(
                f"pruner={pruner!r} cannot be used with searcher {cls.name!r}: Optuna's pruners stop "
                "single-objective trials only; use pruner='none' (or a single-objective searcher such as 'tpe')"
            )
        return made

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        storage: str | None = None,
        study_name: str | None = None,
        load_if_exists: bool = True,
        pruner: str | None = "none",
        total_trials: int | None = None,
        seed_ratios: Sequence[Mapping[str, float]] | None = None,
        seed_uniform: bool = True,
        n_startup_trials: int | None = None,
        heartbeat_interval: int = 30,
        grace_period: int | None = None,
        max_retry: int | None = 3,
    ) -> None:
        super().__init__(space, seed=seed)
        if total_trials is not None and (not isinstance(total_trials, int) or total_trials < 1):
            raise AutoPruneError(f"total_trials={total_trials!r} must be a positive integer (trials of all workers)")
        if n_startup_trials is not None and (not isinstance(n_startup_trials, int) or n_startup_trials < 0):
            raise AutoPruneError(f"n_startup_trials={n_startup_trials!r} must be a non-negative integer")
        self.pruner_name = "none" if pruner is None else pruner
        self.pruner = self.check_pruner(self.pruner_name)
        self.storage_url = storage
        self.study_name = study_name or "autoprune"
        self.load_if_exists = load_if_exists
        self.total_trials = total_trials
        self.n_startup_trials = n_startup_trials
        self._storage_options = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                                 "max_retry": max_retry}  # fmt: skip
        self.distributions = {
            g.name: FloatDistribution(g.ratio(g.min_count), g.ratio(g.max_count)) for g in space.groups
        }
        if isinstance(seed_ratios, (Mapping, str)):
            raise AutoPruneError(
                f"seed_ratios={seed_ratios!r} must be a list of {{group: keep_ratio}} mappings, e.g. [{{'conv1': 0.5}}]"
            )
        seeds = [space.uniform(1.0)] if seed_uniform else []
        for i, ratios in enumerate(seed_ratios or ()):
            if not isinstance(ratios, Mapping):
                raise AutoPruneError(f"seed_ratios[{i}] = {ratios!r} must map group names to keep ratios")
            seeds.append(space.project(ratios))
        self.seed_params = [self._params(counts) for counts in seeds]
        self._study: optuna.Study | None = None
        self._storage: optuna.storages.BaseStorage | None = None
        self._lock: StudyLock | None = None
        self._total: int | None = total_trials
        self._seeded = False
        self._pending: optuna.Trial | None = None
        self._pending_info: dict[str, Any] = {}
        self._heartbeat: Heartbeat | None = None

    # ------------------------------------------------------------------ to override
    @property
    def sampler_name(self) -> str:
        """The Optuna sampler's name, for reports."""
        return getattr(self.sampler_class, "__name__", "")

    @property
    def startup_trials(self) -> int:
        """Random start-up trials of the sampler (0 for samplers without that phase)."""
        if self.default_startup is None:
            return 0
        return self.default_startup if self.n_startup_trials is None else self.n_startup_trials

    @property
    def warming_up(self) -> bool:
        """Whether the next proposal is a seeded candidate or one of the sampler's random start-up trials."""
        finished = sum(t.state in ("complete", "pruned") for t in self._history)
        return len(self._history) < len(self.seed_params) or finished < self.startup_trials

    def _sampler_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.sampler_options)
        if self.default_startup is not None:
            kwargs["n_startup_trials"] = self.startup_trials
        return kwargs

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        return self.sampler_class(seed=self.seed, **self._sampler_kwargs())  # built under quiet_optuna (study)

    def _directions(self) -> list[StudyDirection]:
        return [MAX, MIN] if self.multi_objective else [MAX]

    def _values(self, result: EvalResult) -> list[float]:
        return [result.accuracy, result.macs_ratio] if self.multi_objective else [result.accuracy]

    def _mark(self, trial: optuna.Trial, raw_cost: float) -> None:
        """Hook after sampling (NSGA-II marks raw samples beyond the budget)."""

    # ------------------------------------------------------------------ the study
    def _params(self, counts: Mapping[str, int]) -> dict[str, float]:
        ratios = self.space.ratios(counts)
        return {n: min(max(ratios[n], d.low), d.high) for n, d in self.distributions.items()}

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (created, or loaded from the storage, on first use)."""
        if self._study is None:
            self._lock = StudyLock(self.storage_url, self.study_name)
            with self._lock, quiet_optuna():  # first creation of tables and study: one worker at a time
                self._storage = open_storage(self.storage_url, **self._storage_options)
                try:
                    study = optuna.create_study(
                        storage=self._storage, sampler=self._make_sampler(), pruner=self.pruner,
                        study_name=self.study_name, directions=self._directions(), load_if_exists=self.load_if_exists,
                    )  # fmt: skip
                except optuna.exceptions.DuplicatedStudyError:
                    raise AutoPruneError(
                        f"study {self.study_name!r} already exists in the storage; resume it "
                        "(load_if_exists=True / --resume) or choose another study_name"
                    ) from None
            wanted = self._directions()
            if list(study.directions) != wanted:
                raise AutoPruneError(
                    f"study {self.study_name!r} optimizes {len(study.directions)} objective(s) but searcher "
                    f"{self.name!r} optimizes {len(wanted)}; use another study_name for this searcher"
                )
            self._study = study
        return self._study

    def plan_budget(self, trials: int) -> None:
        """Without ``total_trials``, the study's total is the runner's budget: trials told so far + ``trials``."""
        if self.total_trials is None:
            self._total = len(self._history) + trials

    def _seed(self, study: optuna.Study) -> None:
        # Under the study lock: every worker tries, ``skip_if_exists`` keeps one copy of each seed.
        count = budget_count(study.get_trials(deepcopy=False))[0]
        room = math.inf if self._total is None else self._total - count
        for params in self.seed_params[: max(0, int(min(room, len(self.seed_params))))]:
            study.enqueue_trial(params, user_attrs={"seeded": True}, skip_if_exists=True)
        self._seeded = True

    # ------------------------------------------------------------------ ask / prune / tell
    def ask(self) -> Proposal | None:
        """The next candidate, or None once the study holds ``total_trials`` trials.

        Its info holds the Optuna trial number and raw params (how a resumed run matches a logged trial).

        With a heartbeat storage, a worker that has nothing left to ask waits while other workers' trials
        run: if one of them died, its trial goes stale, is re-queued, and this worker runs it.
        """
        study = self.study
        assert self._lock is not None
        last, deadline = None, math.inf
        while True:
            with self._lock, quiet_optuna():
                fail_stale(study, self._storage)
                fail_dead_local(study, untagged=self._lock.covers_all_workers)
                if not self._seeded:
                    self._seed(study)
                trials = study.get_trials(deepcopy=False)
                count, waiting = budget_count(trials)
                if self._total is None or count < self._total or waiting:
                    trial = study.ask()
                    trial.set_user_attr(WORKER_ATTR, worker_tag())
                    # The first heartbeat before the lock is released: a worker dying now leaves a trial that
                    # can go stale.
                    self._heartbeat = Heartbeat(self._storage, trial._trial_id)  # as Optuna's optimize loop
                    break
            running = {t.number for t in trials if t.state == TrialState.RUNNING}
            interval = self._heartbeat_interval()
            if not running or interval is None:
                return None
            if running != last:  # progress: wait up to a full grace period again
                last, deadline = running, time.monotonic() + self._grace_period(interval) + 2 * interval
            if time.monotonic() > deadline:
                return None
            time.sleep(min(1.0, interval))
        raw = {name: trial.suggest_float(name, d.low, d.high) for name, d in self.distributions.items()}
        counts = self.project(raw)
        raw_cost = self.space.cost(self.space.counts(raw))
        trial.set_user_attr("counts", counts)
        trial.set_user_attr("keep_ratios", {k: round(v, 6) for k, v in self.space.ratios(counts).items()})
        trial.set_user_attr("raw_cost", raw_cost)
        self._mark(trial, raw_cost)
        self._pending = trial
        self._pending_info = {"optuna_trial": trial.number, "params": dict(trial.params)}
        return Proposal(counts, dict(self._pending_info))

    def _heartbeat_interval(self) -> int | None:
        return heartbeat_interval(self._storage)

    def _grace_period(self, interval: int) -> float:
        grace = self._storage_options["grace_period"]
        return 2.0 * interval if grace is None else float(grace)

    def should_prune(self, counts: Mapping[str, int], partial: EvalResult, rung: int) -> bool:
        """Report the partial accuracy at step = validation batches and ask the study's pruner."""
        trial = self._pending
        if trial is None or self.multi_objective or self.pruner_name == "none":
            return False
        trial.report(partial.accuracy, step=partial.fidelity)
        return bool(trial.should_prune())

    def _learn(self, trial: Trial) -> None:
        pending, self._pending = self._pending, None
        self._stop_heartbeat()
        if pending is None:
            return
        for key, value in self._pending_info.items():  # trials told without the proposal's info
            trial.info.setdefault(key, value)
        self._pending_info = {}
        self._tell(pending, trial)

    def _tell(self, pending: optuna.Trial | int, trial: Trial) -> None:
        with quiet_optuna():
            if trial.state == "complete" and trial.result is not None:
                self.study.tell(pending, self._values(trial.result))
            elif trial.state == "pruned":  # should_prune reported the accuracy it was stopped at
                self.study.tell(pending, state=TrialState.PRUNED)
            else:
                self.study.tell(pending, state=TrialState.FAIL)

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    # ------------------------------------------------------------------ resume and close
    def restore(self, trials: Sequence[Trial]) -> None:
        """Continue an interrupted search: the history is ``trials``; the study already holds them.

        A study that does not (an in-memory study, or a new storage) gets them added back with their raw
        params (or their keep ratios), states and scores, so the sampler continues from them.

        A logged trial whose process was killed after logging it and before telling the study is still
        running there; it is told now, with the logged score, so it is neither lost nor run again.
        """
        self._history = list(trials)
        study = self.study
        assert self._lock is not None
        with self._lock, quiet_optuna():
            held = study.get_trials(deepcopy=False)
            if not held:
                for t in trials:
                    study.add_trial(self._frozen(t))
                return
            logged = {t.info.get("optuna_trial"): t for t in trials}
            for frozen in held:
                if frozen.state == TrialState.RUNNING and frozen.number in logged and orphaned(
                    frozen, untagged=self._lock.covers_all_workers
                ):
                    self._tell(frozen.number, logged[frozen.number])

    def _frozen(self, t: Trial) -> optuna.trial.FrozenTrial:
        params = t.info.get("params") or self._params(t.counts)
        params = {n: min(max(float(params.get(n, d.high)), d.low), d.high) for n, d in self.distributions.items()}
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(t.state, TrialState.FAIL)
        r = t.result
        return optuna.trial.create_trial(
            state=state, params=params, distributions=dict(self.distributions),
            values=self._values(r) if state == TrialState.COMPLETE and r is not None else None,
            intermediate_values={r.fidelity: r.accuracy} if state == TrialState.PRUNED and r is not None else None,
            user_attrs={"counts": t.counts, "restored": True},
        )  # fmt: skip

    def close(self) -> None:
        """Stop the heartbeat; a trial asked but never told (an interrupted run) is failed and re-queued."""
        self._stop_heartbeat()
        pending, self._pending = self._pending, None
        if pending is not None and self._study is not None:
            with quiet_optuna():
                frozen = self._study.tell(pending, state=TrialState.FAIL)
                optuna.storages.RetryHeartbeatStaleTrialCallback()(self._study, frozen)
        if self._lock is not None:
            self._lock.close()

    def state(self) -> dict[str, Any]:
        """Sampler, pruner, study name and size, for ``report.json``."""
        from autoprune.search.optuna_storage import redact

        return {
            "sampler": self.sampler_name, "pruner": self.pruner_name, "study_name": self.study_name,
            "storage": None if self.storage_url is None else redact(self.storage_url),
            "study_trials": None if self._study is None else len(self._study.get_trials(deepcopy=False)),
        }  # fmt: skip
