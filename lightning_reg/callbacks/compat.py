"""Checkpoint compatibility: warn when a run resumes from a checkpoint that holds no state for a callback."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn


def warn_if_state_missing(callback: pl.Callback, trainer: pl.Trainer, checkpoint: dict[str, Any],
                          consequence: str) -> bool:
    """Warn (once per load, rank 0) when ``checkpoint`` has no entry for ``callback`` while resuming a fit.

    That happens when the checkpoint was written before the callback was added, or by an instance with
    other identifying arguments (a different ``state_key``). The run continues with the callback's initial
    state; ``consequence`` says what that means for this callback. Returns whether it warned.

    Example:
        >>> import lightning.pytorch as pl
        >>> warn_if_state_missing(pl.Callback(), pl.Trainer(logger=False), {"callbacks": {}}, "nothing")
        False
    """
    if trainer.state.fn != TrainerFn.FITTING:  # testing/validating a checkpoint restores no training state
        return False
    states = checkpoint.get("callbacks") or {}
    if callback.state_key in states or callback._legacy_state_key in states:
        return False
    rank_zero_warn(
        f"{type(callback).__name__}: the checkpoint (epoch {checkpoint.get('epoch')}, global step "
        f"{checkpoint.get('global_step')}) holds no state for this callback (key {callback.state_key!r}): it was "
        f"written before the callback was added or with other arguments. Continuing with its initial state: "
        f"{consequence}",
        category=UserWarning,
    )
    return True
