"""What a worker launches and gets back: job specs, their outcomes, and the variants of one configuration.

One configuration may need several jobs: the k folds of a cross-validated trial, or the m seeds of a confirmed
winner. Both are :class:`Variant` lists given to :meth:`~lightning_reg.study.worker.StudyWorker.specs_for`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna

from lightning_reg.study.link import TrialLink
from lightning_reg.study.options import KeysConf, default

__all__ = [
    "DEFAULT_KEYS",
    "JobOutcome",
    "JobSpec",
    "Launch",
    "Variant",
    "Worker",
    "fold_variants",
    "seed_variants",
    "summarize_values",
]


@dataclass
class JobSpec:
    """One job to launch: its overrides, the sub-directory of the sweep directory, and its trial link.

    Example:
        >>> from lightning_reg.study.search_space import parse_search_space
        >>> space = parse_search_space({"model.dropout": "choice(0.0, 0.5)"}, ["trainer=debug"])
        >>> from lightning_reg.study.worker import StudyWorker
        >>> worker = StudyWorker(optuna.create_study(), space, lambda specs: [], n_trials=1)
        >>> for spec in worker.specs_for(None, {"model.dropout": 0.5}, fold_variants(2), subdir="7"):
        ...     print(spec.subdir, spec.overrides)
        7/fold0 ['trainer=debug', 'model.dropout=0.5', 'data.fold=0', 'data.num_folds=2']
        7/fold1 ['trainer=debug', 'model.dropout=0.5', 'data.fold=1', 'data.num_folds=2']
    """

    overrides: list[str]
    subdir: str
    link: TrialLink | None = None


@dataclass
class JobOutcome:
    """What came back from one job: its return value (a float, a list for several objectives, or ``None``), or
    that it was pruned (it raised ``optuna.TrialPruned``) or failed.

    Example:
        >>> from lightning_reg.study.search_space import parse_search_space
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> outcomes = iter([JobOutcome(None, failed=True, error="RuntimeError: boom"), JobOutcome(0.5)])
        >>> space = parse_search_space({"x": "choice(1, 2)"}, [])
        >>> from lightning_reg.study.worker import StudyWorker
        >>> told = StudyWorker(optuna.create_study(), space, lambda specs: [next(outcomes)], n_trials=2).run()
        >>> [(t.state.name, t.value) for t in told]  # a failed job fails its trial, which still counts
        [('FAIL', None), ('COMPLETE', 0.5)]
    """

    value: Any
    failed: bool = False
    error: str | None = None
    job_dir: str | None = None
    pruned: bool = False  # the job raised optuna.TrialPruned


Launch = Callable[[Sequence[JobSpec]], Sequence[JobOutcome]]


@dataclass(frozen=True)
class Variant:
    """One job of a configuration: extra overrides and a name for its directory.

    Example:
        >>> [v.name for v in fold_variants(3)], fold_variants(3)[1].overrides
        (['fold0', 'fold1', 'fold2'], ['data.fold=1', 'data.num_folds=3'])
        >>> seed_variants([7])[0].overrides
        ['seed=7']
    """

    name: str
    overrides: list[str] = field(default_factory=list)
    fold: int | None = None
    num_folds: int | None = None


#: The task-config keys a fold job and a confirmation job set (``hydra.sweeper.keys``).
DEFAULT_KEYS = {role: default(role, KeysConf) for role in ("fold", "num_folds", "seed")}


def fold_variants(num_folds: int | None, keys: Mapping[str, str] = DEFAULT_KEYS) -> list[Variant]:
    """The k jobs of a cross-validated configuration (one plain job without folds)."""
    if not num_folds:
        return [Variant("")]
    fold, total = keys["fold"], keys["num_folds"]
    return [Variant(f"fold{i}", [f"{fold}={i}", f"{total}={num_folds}"], i, num_folds) for i in range(num_folds)]


def seed_variants(seeds: Sequence[int], key: str = DEFAULT_KEYS["seed"]) -> list[Variant]:
    """The m jobs of a confirmed configuration, one per fresh seed."""
    return [Variant(f"seed{s}", [f"{key}={s}"]) for s in seeds]


def summarize_values(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample std (n − 1) and count of the finite values.

    Example:
        >>> summarize_values([0.9, 0.8, None])
        {'mean': 0.85, 'std': 0.0707, 'n': 2}
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": round(statistics.fmean(vals), 12), "std": round(std, 4), "n": len(vals)}


def _as_values(value: Any, n_objectives: int) -> list[float] | None:
    if value is None:
        return None
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        out = [float(v) for v in vals]
    except (TypeError, ValueError):
        return None
    if len(out) != n_objectives or not all(math.isfinite(v) for v in out):
        return None
    return out


class Worker(Protocol):
    """What the worker's mixins (:mod:`~lightning_reg.study.nodes`, :mod:`~lightning_reg.study.confirm`) use of a
    :class:`~lightning_reg.study.worker.StudyWorker`, so that they need not import it."""

    study: optuna.Study
    launch: Launch
    keys: dict[str, str]
    group: str | None
    n_jobs: int
    n_objectives: int
    num_folds: int | None
    poll_interval: float

    def specs_for(
        self,
        trial: optuna.trial.Trial | None,
        params: dict[str, Any],
        variants: Sequence[Variant],
        subdir: str,
        extra: Sequence[str] = (),
        role: str = "leader",
    ) -> list[JobSpec]: ...
