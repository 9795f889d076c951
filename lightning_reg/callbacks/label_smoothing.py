"""LabelSmoothing: smooth the training targets of any LightningModule, with a schedule (thin glue).

The math is :func:`lightning_reg.core.augment.mixers.smooth_labels`; this callback decides when to call it.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping, MutableSequence
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lightning_reg._lightning_internals import callback_metrics_store
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.augment.mixers import smooth_labels
from lightning_reg.core.schedules import ScheduleLike, as_schedule, probe_points
from lightning_reg.data.augment_mixin import AugmentationMixin, require_soft_targets
from lightning_reg.errors import ConfigError, check_int

__all__ = ["LabelSmoothing"]


class LabelSmoothing(pl.Callback):
    """Replace each training batch's targets by smoothed soft targets ``(1 - e) one_hot(y) + e / C``.

    Works on any LightningModule whose loss takes probability targets (``F.cross_entropy`` does) and that
    says so with the class attribute ``accepts_soft_targets = True``; others get a :class:`ConfigError` at
    ``setup``, before any step. The targets are replaced in ``on_train_batch_start``, in the batch object the
    training step then receives (a list, as the default collate gives, or a dict); validation and test keep
    the hard labels. Batches that already carry soft targets (MixUp/CutMix of
    :class:`~lightning_reg.AugmentationMixin`) are smoothed as rows, which equals timm's smooth-then-mix.

    The same loss as Keras' ``CategoricalCrossentropy(from_logits=True, label_smoothing=e)`` and torch's
    ``F.cross_entropy(label_smoothing=e)`` on the same logits (``tests/parity``). ``e`` is a pure function of the
    trainer's step and epoch, so resume and DDP need no state; it is logged as ``reg/label_smoothing``.

    Args:
        smoothing: ``e`` in ``[0, 1)``: a number or a schedule (see :func:`~lightning_reg.as_schedule`).
        num_classes: ``C``; default: the DataModule's or the module's ``num_classes`` (attribute or hparam).
        target: where the targets are in the batch: a position (default 1, ``(x, y)``) or a dict key.
        log_name: the metric name; ``None`` logs nothing.

    Example:
        >>> cb = LabelSmoothing(0.1, num_classes=10)
        >>> batch = [torch.zeros(2, 3), torch.tensor([0, 9])]
        >>> cb.smooth(batch, step=0, epoch=0)[1][0, :2].tolist()
        [0.9100000262260437, 0.009999999776482582]
    """

    def __init__(
        self,
        smoothing: ScheduleLike = 0.1,
        num_classes: int | None = None,
        target: int | str = 1,
        log_name: str | None = "reg/label_smoothing",
    ) -> None:
        self.schedule = as_schedule(smoothing, "smoothing", unit="step")
        for t in probe_points(10_000):
            value = float(self.schedule(t))
            if math.isnan(value) or not 0.0 <= value < 1.0:
                raise ConfigError(f"`smoothing` must lie in [0, 1); {self.schedule!r} gives {value!r} at {t}.")
        if num_classes is not None:
            check_int("num_classes", num_classes, low=2)
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            raise ConfigError(f"`target` must be a batch position (int) or a dict key (str); got {target!r}.")
        if log_name is not None and (not isinstance(log_name, str) or not log_name):
            raise ConfigError(f"`log_name` must be a non-empty string or None; got {log_name!r}.")
        self.num_classes = num_classes
        self.target = target
        self.log_name = log_name
        self._classes: int | None = num_classes
        self._value: float | None = None
        self._at: tuple[int, int] | None = None
        self._last_logged_step = -1

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(schedule=repr(self.schedule), target=self.target)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        require_soft_targets(pl_module, "LabelSmoothing", "or remove the callback")
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, AugmentationMixin) and dm.augment_config.label_smoothing > 0:
            raise ConfigError(
                "label smoothing is set twice: `augment.label_smoothing`="
                f"{dm.augment_config.label_smoothing} and the LabelSmoothing callback would both smooth. Keep one."
            )
        if self._classes is None:
            hparams = getattr(pl_module, "hparams", {})
            for found in (
                getattr(dm, "num_classes", None),
                getattr(pl_module, "num_classes", None),
                hparams.get("num_classes") if hasattr(hparams, "get") else None,
            ):
                if isinstance(found, int) and not isinstance(found, bool):
                    self._classes = check_int("num_classes", found, low=2)
                    break
        if self._classes is None:
            raise ConfigError(
                "LabelSmoothing needs `num_classes`: pass it, or give the DataModule or the module a `num_classes` "
                "attribute or hparam; got none."
            )

    def smooth(self, batch: Any, step: int, epoch: int) -> Any:
        """Replace the targets of ``batch`` (in place) by their smoothing at ``(step, epoch)``; return the batch."""
        classes = self._classes or self.num_classes
        if classes is None:
            raise ConfigError("LabelSmoothing needs `num_classes`; got none.")
        self._value = value = float(self.schedule.at(step, epoch))
        self._at = (step, epoch)
        if isinstance(self.target, str):
            if not isinstance(batch, MutableMapping) or self.target not in batch:
                raise ConfigError(
                    f"`target`={self.target!r} names a dict key, but the batch is {type(batch).__name__}"
                    f"{f' with keys {sorted(batch)}' if isinstance(batch, MutableMapping) else ''}."
                )
        elif not isinstance(batch, MutableSequence) or not -len(batch) <= self.target < len(batch):
            raise ConfigError(
                f"`target`={self.target!r} is a batch position, but the batch is a {type(batch).__name__}"
                f"{f' of {len(batch)}' if isinstance(batch, (list, tuple)) else ''}: LabelSmoothing replaces the "
                "targets in place and needs a list (the default collate's) or a dict."
            )
        y = batch[self.target]
        if not isinstance(y, torch.Tensor):
            raise ConfigError(f"LabelSmoothing: the batch's targets must be a tensor; got {type(y).__name__}.")
        if value > 0 or not y.is_floating_point():
            batch[self.target] = smooth_labels(y, classes, value)
        return batch

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.smooth(batch, trainer.global_step, trainer.current_epoch)
        if self.log_name and self._value is not None:
            callback_metrics_store(trainer)[self.log_name] = torch.tensor(self._value)
            if log_due(trainer, None, self._last_logged_step, at_zero=True):
                self._last_logged_step = trainer.global_step
                log_to_loggers(trainer, {self.log_name: self._value})

    @override
    def state_dict(self) -> dict[str, Any]:
        # Informational: the value is recomputed from the trainer's counters on resume.
        return {"smoothing": self._value, "last_logged_step": self._last_logged_step}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(self, trainer, checkpoint, "the smoothing is a pure function of the step and epoch.")

    def run_summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records."""
        step, epoch = self._at if self._at is not None else (None, None)
        return {
            "schedule": repr(self.schedule),
            "final_smoothing": self._value,
            "final_step": step,
            "final_epoch": epoch,
            "num_classes": self._classes,
        }
