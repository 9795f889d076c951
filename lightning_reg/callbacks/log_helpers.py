"""Logging shared by the callbacks: a warning when a resumed checkpoint holds no state for a callback, and
logging at a callback's own cadence."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from lightning_reg._lightning_internals import trainer_log_every_n_steps

__all__ = ["log_due", "log_to_loggers", "warn_if_state_missing"]


def warn_if_state_missing(
    callback: pl.Callback, trainer: pl.Trainer, checkpoint: dict[str, Any], consequence: str
) -> bool:
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
    if callback.state_key in states:
        return False
    rank_zero_warn(
        f"{type(callback).__name__}: the checkpoint (epoch {checkpoint.get('epoch')}, global step "
        f"{checkpoint.get('global_step')}) holds no state for this callback (key {callback.state_key!r}): it was "
        f"written before the callback was added or with other arguments. Continuing with its initial state: "
        f"{consequence}",
        category=UserWarning,
    )
    return True


def log_due(trainer: pl.Trainer, every: int | None, last_logged_step: int, *, at_zero: bool = False) -> bool:
    """True once per ``every`` optimizer steps (the trainer's ``log_every_n_steps`` when None), with loggers.

    ``at_zero``: step 0 counts too (for values set before the first step, such as a dropout rate).

    Example:
        >>> import lightning.pytorch as pl
        >>> log_due(pl.Trainer(logger=False), 1, -1, at_zero=True)  # no loggers
        False
    """
    every = trainer_log_every_n_steps(trainer) if every is None else every
    step = trainer.global_step
    return (
        every > 0
        and bool(trainer.loggers)
        and step != last_logged_step
        and (at_zero or step != 0)
        and step % every == 0
    )


def log_to_loggers(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Write straight to the loggers at the callback's own cadence, at ``trainer.global_step``.

    ``pl_module.log(on_step=True)`` would keep the value in Lightning's results until the trainer's own
    ``log_every_n_steps`` flushes it, re-logging a stale value when the two periods differ, and it costs about
    half a millisecond per call. The values are identical on every rank (DDP keeps the weights and the step
    counters equal), so rank zero writes them without a sync.
    """
    if metrics and trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
