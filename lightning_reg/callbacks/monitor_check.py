"""Check every monitored metric name at the sanity-check validation, before the first training step."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lightning_reg._lightning_internals import trainer_callbacks
from lightning_reg.core.checks import check_monitored

__all__ = ["MonitorCheck"]


class MonitorCheck(pl.Callback):
    """Raise a ConfigError before training when a monitored name is not among the logged validation metrics.

    It collects ``monitor`` of every callback (EarlyStopping, ModelCheckpoint...), the monitor of every
    LR-scheduler config (ReduceLROnPlateau) and ``extra`` names (the train entry point's ``optimized_metric``),
    and checks them when Lightning's sanity-check validation ends. With ``num_sanity_val_steps=0`` the check
    runs at the end of the first validation instead (after the first epoch's steps, as the error says).
    Names starting with ``train`` (or ``test``) are logged only when a training epoch (or the test) ends; they
    are not checked here.

    Example:
        >>> cb = MonitorCheck(extra=[("optimized_metric", "val/acc")])
    """

    def __init__(self, extra: list[tuple[str, str]] | None = None) -> None:
        self.extra = [(o, m) for o, m in (extra or []) if m]
        self._done = False

    def _names(self, trainer: pl.Trainer) -> list[tuple[str, str]]:
        names: list[tuple[str, str]] = []
        for cb in trainer_callbacks(trainer):
            monitor = getattr(cb, "monitor", None)
            if isinstance(monitor, str) and monitor:
                names.append((f"{type(cb).__name__}.monitor", monitor))
        for cfg in getattr(trainer, "lr_scheduler_configs", []) or []:
            if getattr(cfg, "monitor", None):
                names.append((f"scheduler.monitor ({type(cfg.scheduler).__name__})", cfg.monitor))
        names += self.extra
        return [(o, m) for o, m in names if not m.startswith(("train", "test"))]

    def _check(self, trainer: pl.Trainer, when: str) -> None:
        if self._done or trainer.state.fn != "fit":
            return
        self._done = True
        check_monitored(self._names(trainer), trainer.callback_metrics.keys(), when)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._done = False

    @override
    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer, "by the sanity-check validation (before any training step)")

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, "by the first validation (num_sanity_val_steps=0, so after the first epoch)")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {}
