"""AugMixJSD: AugMix's Jensen-Shannon consistency term for any classifier returning logits (thin glue).

The math and the gradient-side hook are :mod:`lightning_reg.core.augment.jsd`; this callback attaches the hook for
the fit and logs the term. Our DataModules do the same on their own with ``augment.jsd_splits`` (``augment=augmix_jsd``);
the callback is for DataModules that build the split batches themselves.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lightning_reg._lightning_internals import callback_metrics_store
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.augment.jsd import JSDConsistency
from lightning_reg.data.augment_mixin import AugmentationMixin, check_jsd_precision
from lightning_reg.errors import ConfigError

__all__ = ["AugMixJSD"]


class AugMixJSD(pl.Callback):
    """Add ``alpha · JSD(p_clean, p_aug1, ...)`` to the training loss's gradient, the module's code untouched.

    Each training batch must hold ``num_splits`` views per image, split-major (the clean images first), as
    timm's AugMix data gives them and as ``augment.jsd_splits`` makes our DataModules give them. The module's
    forward output (``pl_module(x)``) is taken as the logits. With ``clean_only_loss`` (timm, the paper), the
    module's own batch-mean loss counts the clean split only (see :mod:`lightning_reg.core.augment.jsd`): the
    gradient then equals that of timm's ``JsdCrossEntropy(num_splits, alpha)`` (``tests/parity``).

    Works with DDP (one backward), gradient accumulation (the term is scaled by ``1/accumulate_grad_batches`` as
    Lightning scales the loss) and bf16-mixed; ``16-mixed`` is refused (its GradScaler would not scale the term).
    Logged as ``reg/jsd``.

    Args:
        alpha: weight of the term (12 in the paper and timm).
        num_splits: views per image (3: clean + 2 AugMix views).
        clean_only_loss: the module's loss counts the clean split only; False keeps it over every view.
        log_name: metric name, or None.

    Example:
        >>> cb = AugMixJSD(alpha=12.0, num_splits=3)
        >>> cb.jsd.num_splits
        3
    """

    def __init__(
        self,
        alpha: float = 12.0,
        num_splits: int = 3,
        clean_only_loss: bool = True,
        log_name: str | None = "reg/jsd",
    ) -> None:
        self.jsd = JSDConsistency(num_splits, alpha, clean_only_loss)
        if log_name is not None and (not isinstance(log_name, str) or not log_name):
            raise ConfigError(f"`log_name` must be a non-empty string or None; got {log_name!r}.")
        self.log_name = log_name
        self._last_logged_step = -1
        self._calls_before = 0

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(alpha=self.jsd.alpha, num_splits=self.jsd.num_splits)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        check_jsd_precision(str(trainer.precision))
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, AugmentationMixin) and dm.augment_config.jsd_splits not in (0, self.jsd.num_splits):
            raise ConfigError(
                f"`num_splits`={self.jsd.num_splits} but the DataModule's `augment.jsd_splits` is "
                f"{dm.augment_config.jsd_splits}; they must agree."
            )
        self.jsd.scale = 1.0 / trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1.0
        self.jsd.attach(pl_module)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.jsd.detach()

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._calls_before = self.jsd.calls

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.jsd.calls == self._calls_before:
            raise ConfigError(
                f"AugMixJSD: the training step never called {type(pl_module).__name__}'s forward to get (N, C) logits "
                "with gradient, so no JSD term was added. Call self(x) in training_step."
            )
        value = self.jsd.last_value
        if self.log_name is None or value is None:
            return
        callback_metrics_store(trainer)[self.log_name] = value
        if log_due(trainer, None, self._last_logged_step):
            self._last_logged_step = trainer.global_step
            log_to_loggers(trainer, {self.log_name: float(value)})

    @override
    def state_dict(self) -> dict[str, Any]:
        value = self.jsd.last_value
        return {"last_value": None if value is None else float(value), "last_logged_step": self._last_logged_step}

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(self, trainer, checkpoint, "the JSD term keeps no state besides its last logged step.")

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))

    def run_summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records."""
        value = self.jsd.last_value
        return {
            "alpha": self.jsd.alpha,
            "num_splits": self.jsd.num_splits,
            "final_jsd": None if value is None else float(value),
        }
