"""Lightning glue shared by the callbacks: a warning when a resumed checkpoint holds no state for a callback, and
logging at a callback's own cadence."""

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


def log_due(trainer: pl.Trainer, every: int | None, last_logged_step: int, *, at_zero: bool = False) -> bool:
    """True once per ``every`` optimizer steps (the trainer's ``log_every_n_steps`` when None), with loggers.

    ``at_zero``: step 0 counts too (for values set before the first step, such as a dropout rate).

    Example:
        >>> import lightning.pytorch as pl
        >>> log_due(pl.Trainer(logger=False), 1, -1, at_zero=True)  # no loggers
        False
    """
    every = trainer.log_every_n_steps if every is None else every
    step = trainer.global_step
    return (every > 0 and bool(trainer.loggers) and step != last_logged_step and (at_zero or step != 0)
            and step % every == 0)


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


def averaging_callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    """Lightning's ``WeightAveraging`` callbacks (``EMAWeightAveraging`` and others) of ``trainer``.

    Example:
        >>> import lightning.pytorch as pl
        >>> averaging_callbacks(pl.Trainer(logger=False))
        []
    """
    from lightning.pytorch.callbacks import WeightAveraging

    return [cb for cb in trainer.callbacks if isinstance(cb, WeightAveraging)]


def evaluated_module(trainer: pl.Trainer) -> Any:
    """The module whose weights validation just evaluated, read at ``on_validation_end``.

    ``WeightAveraging`` swaps its average into the LightningModule for validation and swaps it back at
    ``on_validation_epoch_end``, so by ``on_validation_end`` the evaluated weights are in its (private)
    ``_average_model.module``. Without weight averaging: the LightningModule itself.
    """
    for cb in averaging_callbacks(trainer):
        average = getattr(cb, "_average_model", None)
        if average is not None:
            return average.module
    return trainer.lightning_module


def trainer_of_closure(closure: Any) -> pl.Trainer | None:
    """The Trainer behind a closure that Lightning passed to ``optimizer.step``, or None for another closure.

    Lightning's precision plugins pass ``functools.partial(self._wrap_closure, model, optimizer, closure)``
    (private layout): the LightningModule among its arguments leads to the trainer.

    Example:
        >>> trainer_of_closure(lambda: 0.0) is None
        True
    """
    for arg in getattr(closure, "args", ()):
        if isinstance(arg, pl.LightningModule):
            return arg._trainer
    return None


from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _CSVExperimentWriter  # noqa: E402


class AppendingCSVExperimentWriter(_CSVExperimentWriter):
    """Lightning's CSV experiment writer, except that an existing ``metrics.csv`` is continued, never deleted.

    Lightning 2.6's writer removes ``metrics.csv`` when its directory is not empty (its private
    ``_check_log_dir_exists``), so a resumed run lost every row logged before the resume. Here the existing
    header is read back, new rows are appended under it, and a new column rewrites the file with every old row
    kept (Lightning's own ``_rewrite_with_new_header``).
    """

    def _check_log_dir_exists(self) -> None:  # overrides Lightning's private hook (deletes metrics.csv)
        import csv

        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(header))


def callback_metrics_store(trainer: pl.Trainer) -> dict[str, Any]:
    """The dict behind ``trainer.callback_metrics``, for a callback that only *writes* a value into it.

    Lightning's ``callback_metrics`` property re-aggregates every logged result on each read before returning
    this same dict (``LoggerConnector._callback_metrics``, private), which cost ScheduledDropout about half its
    per-step instructions. Writing into the dict directly is what ``trainer.callback_metrics[k] = v`` does, minus
    that re-aggregation; readers still go through the property. Falls back to the property if the private
    attribute is not there. (Private name, issue 15: to be merged into the module that gathers them.)
    """
    store = getattr(getattr(trainer, "_logger_connector", None), "_callback_metrics", None)
    return store if isinstance(store, dict) else trainer.callback_metrics
