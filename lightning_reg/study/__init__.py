"""Optuna sweeps that scale past one process: the engine rules, the worker loop, and the job's trial link.

Import the submodules (they need ``pip install "lightning-reg[optuna]"``); this package itself imports
nothing heavy, so ``lightning_reg.app.train`` can ask :func:`trial_callbacks` on every run.
"""

from __future__ import annotations

import os
from typing import Any

from lightning_reg.study._env import TRIAL_ENV

__all__ = ["TRIAL_ENV", "callbacks_factory", "trial_callbacks"]


def trial_callbacks(optimized_metric: Any) -> list[Any]:
    """The callbacks a job of a lightning_reg Optuna sweep needs (``[]`` outside one).

    Example:
        >>> os.environ.pop(TRIAL_ENV, None) and None
        >>> trial_callbacks("val/acc")
        []
    """
    if not os.environ.get(TRIAL_ENV):
        return []
    from lightning_reg.study.link import TrialPruning, trial_link_from_env

    link = trial_link_from_env()
    assert link is not None
    return [TrialPruning(link)]


def callbacks_factory() -> list[Any]:
    """Lightning's ``lightning.pytorch.callbacks_factory`` entry point: every Trainer gets the trial's pruning.

    Lightning calls this for every Trainer it builds, in any app (``trainer/connectors/callback_connector.py``).
    Inside a job of a lightning_reg sweep (``LIGHTNING_REG_TRIAL`` set by the sweeper) it returns the job's
    :class:`~lightning_reg.study.link.TrialPruning`, which reports to the trial, stops a pruned fit and records the
    job's outcome on the trial itself; elsewhere it returns ``[]`` and imports nothing, so a Trainer outside a sweep
    is exactly as it was.

    Example:
        >>> os.environ.pop(TRIAL_ENV, None) and None
        >>> callbacks_factory()
        []
    """
    if not os.environ.get(TRIAL_ENV):
        return []
    from lightning_reg.study.link import TrialPruning, trial_link_from_env

    link = trial_link_from_env()
    if link is None or (not link.monitor and not link.prune):
        return []  # nothing to report: the task's return value is the trial's result
    return [TrialPruning(link)]
