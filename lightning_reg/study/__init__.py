"""Optuna sweeps that scale past one process: the engine rules, the worker loop, and the job's trial link.

Import the submodules (they need ``pip install "lightning-reg[optuna]"``); this package itself imports
nothing heavy, so ``lightning_reg.app.train`` can ask :func:`trial_callbacks` on every run.
"""

from __future__ import annotations

import os
from typing import Any

TRIAL_ENV = "LIGHTNING_REG_TRIAL"

__all__ = ["TRIAL_ENV", "trial_callbacks"]


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
