"""Log a loss plus the weight penalties, as Keras' ``val_loss`` is: the number its ``EarlyStopping`` watches.

Keras adds every ``kernel_regularizer`` term to the loss it reports, in training and in validation. Our
:class:`~lightning_reg.callbacks.weight_penalty.WeightPenalty` acts on the gradients and leaves the module's loss
alone, so ``val/loss`` is the data loss only. ``PenalizedLoss("val/loss")`` logs ``val/loss_penalized`` =
``val/loss`` + the penalties at the weights validation just evaluated; monitor that to stop where Keras would.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lightning_reg._lightning_internals import trainer_callbacks
from lightning_reg.callbacks.config_error import CallbackConfigError
from lightning_reg.callbacks.weight_penalty import WeightPenalty

__all__ = ["PenalizedLoss"]

PENALTY_KEYS = ("reg/l1", "reg/l2")


class PenalizedLoss(pl.Callback):
    """At each validation epoch end, log ``metric`` plus the current penalties of the trainer's ``WeightPenalty``\\ s.

    Args:
        metric: The logged loss to add the penalties to (logged by the module in its validation step).
        name: What to log the sum as; default ``<metric>_penalized``.

    Example:
        >>> from lightning_reg import EarlyStopping, WeightPenalty
        >>> callbacks = [WeightPenalty(l2=1e-4), PenalizedLoss("val/loss"), EarlyStopping("val/loss_penalized")]
        >>> callbacks[1].name
        'val/loss_penalized'
    """

    def __init__(self, metric: str = "val/loss", name: str | None = None) -> None:
        for option, value in (("metric", metric), ("name", name)):
            if value is not None and (not isinstance(value, str) or not value):
                raise CallbackConfigError(f"`{option}` must be a logged metric's name; got {value!r}.")
        self.metric = metric
        self.name = name or f"{metric}_penalized"

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(metric=self.metric, name=self.name)

    def penalty(self, trainer: pl.Trainer) -> float:
        """The sum of the L1 and L2 penalty values of every ``WeightPenalty`` of ``trainer``, at the current weights."""
        total = 0.0
        for cb in trainer_callbacks(trainer):
            if isinstance(cb, WeightPenalty):
                values: dict[str, Any] = cb.measure()
                total += sum(float(values[k]) for k in PENALTY_KEYS if k in values)
        return total

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "nothing"
            raise CallbackConfigError(
                f"PenalizedLoss: `metric` is {self.metric!r}, which validation does not log; logged: {logged}."
            )
        pl_module.log(self.name, float(value) + self.penalty(trainer), on_step=False, on_epoch=True)
