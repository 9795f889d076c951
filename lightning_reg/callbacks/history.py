"""Per-epoch metric history, kept in callback state so it survives resume and lands in metrics.json."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lightning_reg.callbacks.log_helpers import warn_if_state_missing

__all__ = ["MetricsHistory"]


def _to_float(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.item()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return None


class MetricsHistory(pl.Callback):
    """Record every scalar in ``trainer.callback_metrics`` at the end of each training epoch.

    At ``on_train_epoch_end`` Lightning has already run that epoch's validation, so one row holds the
    epoch's train *and* validation metrics. The train entry point adds this callback and writes
    :attr:`history` to ``metrics.json``; the sweep report reads it to find the best epoch and the
    train-minus-validation gap. The history is part of the checkpoint, so a resumed run keeps it; only
    the train-epoch aggregates of the epoch whose validation wrote the checkpoint are missing after a
    resume (Lightning does not checkpoint metric accumulators).

    Example:
        >>> import lightning.pytorch as pl
        >>> hist = MetricsHistory()
        >>> trainer = pl.Trainer(callbacks=[hist], logger=False)
        >>> hist.history
        []
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._pending: dict[str, float] | None = None
        self._trained_this_epoch = False

    def _row(self, trainer: pl.Trainer) -> dict[str, float]:
        row: dict[str, float] = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        for key, value in trainer.callback_metrics.items():
            f = _to_float(value)
            if f is not None:
                row[key] = f
        return row

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Checkpoints are usually written here, before the epoch's train aggregates exist: keep the
        # validation row in state so a run resumed from such a checkpoint still has it.
        if not trainer.sanity_checking:
            # Train aggregates in callback_metrics here are still the previous epoch's.
            self._pending = {k: v for k, v in self._row(trainer).items() if not k.startswith("train")}

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._trained_this_epoch = True

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = dict(self._pending or {})
        current = self._row(trainer)
        if not self._trained_this_epoch:
            # Lightning replays the end of the epoch a checkpoint was written in; its train aggregates
            # are not in that checkpoint, and callback_metrics holds stale ones.
            current = {k: v for k, v in current.items() if not k.startswith("train/")}
        row.update(current)
        self._pending = None
        self._trained_this_epoch = False
        self.history.append(row)

    def best(self, monitor: str, mode: str = "max") -> dict[str, float] | None:
        """Return the row with the best finite ``monitor`` value (first one on ties), or None."""
        rows = [r for r in self.history if monitor in r and math.isfinite(r[monitor])]
        if not rows:
            return None
        pick = max if mode == "max" else min
        return pick(rows, key=lambda r: r[monitor])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history], "pending": dict(self._pending) if self._pending else None}

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(self, trainer, checkpoint, "the per-epoch history starts at the resumed epoch.")

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state_dict.get("history", [])]
        self._pending = state_dict.get("pending")
