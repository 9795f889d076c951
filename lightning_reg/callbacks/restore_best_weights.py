"""Put the weights of the best check back into the model at the end of ``fit``, whatever ended training.

Works beside any stopper: :class:`lightning_reg.EarlyStopping` (which adds one for ``restore_best_weights=True``
and hands it the values it checks), Lightning's ``EarlyStopping``, a user's callback, or ``max_epochs`` alone.
Keras restores inside its ``EarlyStopping``; Lightning has no restore at all (Lightning #1395).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_reg._lightning_internals import averaging_callbacks, evaluated_module
from lightning_reg.callbacks.config_error import CallbackConfigError, lightning_config_errors
from lightning_reg.callbacks.log_helpers import warn_if_state_missing
from lightning_reg.core.stopping import check_mode_matches, infer_mode, is_improvement
from lightning_reg.errors import check_bool, check_choice, check_int, check_range
from lightning_reg.safe_load import load_checkpoint_tensors

__all__ = ["SOURCES", "RestoreBestWeights"]

log = logging.getLogger(__name__)

SOURCES = ("memory", "checkpoint")


def _same_layout(kept: Any, value: Any) -> bool:
    """Whether ``value`` can be copied into ``kept`` in place (same kind; for tensors, same shape and dtype)."""
    if isinstance(kept, torch.Tensor) or isinstance(value, torch.Tensor):
        return (
            isinstance(kept, torch.Tensor)
            and isinstance(value, torch.Tensor)
            and kept.shape == value.shape
            and kept.dtype == value.dtype
        )
    return True


class RestoreBestWeights(pl.Callback):
    """At the end of ``fit``, load the weights of the best check into the model, on every rank.

    A check is a value of ``monitor``: read at the end of each validation when validation logs it, else at the
    end of each training epoch. The best check is the last one that improved on the best value so far by more
    than ``min_delta`` (Keras' rule); checks before ``start_from_epoch`` are not candidates. Under DDP every rank
    takes rank 0's value, so all ranks keep and restore the same weights. The weights kept are the ones
    validation evaluated: with Lightning's ``EMAWeightAveraging`` (any ``WeightAveraging``) the average, and the
    restore then happens at ``on_fit_end``, after the averaging callback has copied its final average in.

    Args:
        monitor: The logged metric. None: the trainer's first ``EarlyStopping`` (ours or Lightning's) gives it,
            with its ``mode``, ``min_delta`` and ``start_from_epoch``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (the direction of a known metric name, else ``"min"``).
        min_delta: An improvement must beat the best value by more than this (Lightning's signed meaning).
        start_from_epoch: Checks in earlier epochs are never restored (Keras' warm-up).
        source: ``"memory"`` keeps a CPU copy of the best ``state_dict`` (saved in checkpoints, so it survives a
            resume); ``"checkpoint"`` reloads the best file of a ``ModelCheckpoint`` that monitors the same metric
            in the same mode (no copy in memory).
        verbose: Log the restored epoch.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
        >>> restore = RestoreBestWeights("val/loss")
        >>> trainer = pl.Trainer(callbacks=[LightningEarlyStopping("val/loss"), restore], logger=False)
        >>> restore.state_key
        "RestoreBestWeights{'monitor': 'val/loss', 'mode': 'min'}"
    """

    def __init__(
        self,
        monitor: str | None = None,
        mode: str = "auto",
        min_delta: float = 0.0,
        start_from_epoch: int = 0,
        source: str = "memory",
        verbose: bool = False,
    ) -> None:
        with lightning_config_errors():
            if monitor is not None and (not isinstance(monitor, str) or not monitor):
                raise CallbackConfigError(f"`monitor` must be a logged metric's name or None; got {monitor!r}.")
            check_choice("mode", mode, ("min", "max", "auto"))
            check_mode_matches(monitor, mode)
            self.min_delta = check_range("min_delta", min_delta)
            self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, low=0)
            self.source: str = check_choice("source", source, SOURCES)
            self.verbose = check_bool("verbose", verbose)
        self.monitor = monitor
        self.mode = infer_mode(monitor) if monitor and mode == "auto" else mode
        #: Set by :class:`lightning_reg.EarlyStopping`: it hands over the values it checks (synced, replayed).
        self.driven = False
        self._stage: str | None = None
        self._checkpoint_callback: ModelCheckpoint | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every check (a fresh fit)."""
        self.best_value = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.restored_epoch: int | None = None
        self._best_weights: dict[str, Any] | None = None
        self._best_shared = True
        self._from_validation = False

    @property
    def best_weights(self) -> dict[str, Any] | None:
        """CPU copy of the best check's ``state_dict`` (``source="memory"``), or None. Never changed once read."""
        self._best_shared = True
        return self._best_weights

    @best_weights.setter
    def best_weights(self, value: dict[str, Any] | None) -> None:
        self._best_weights = value
        self._best_shared = True  # tensors from elsewhere (a checkpoint, a caller) are never written into

    @property
    @override
    def state_key(self) -> str:
        # Options that change which check is the best join the key only when set, so the plain key stays short.
        extra: dict[str, Any] = {"min_delta": self.min_delta} if self.min_delta else {}
        if self.start_from_epoch:
            extra["start_from_epoch"] = self.start_from_epoch
        if self.source != "memory":
            extra["source"] = self.source
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, **extra)

    # ------------------------------------------------------------------ the checks

    def observe(self, trainer: pl.Trainer, epoch: int, value: float) -> bool:
        """Consider the check of ``epoch`` with ``value`` (the same on every rank); keep the weights if it is the best."""
        if epoch < self.start_from_epoch or not is_improvement(value, self.best_value, self.mode, self.min_delta):
            return False
        self.best_value, self.best_epoch = value, epoch
        if self.source == "memory":
            self._keep(evaluated_module(trainer).state_dict())
        return True

    def _keep(self, source: dict[str, Any]) -> None:
        # Later improvements write into the first copy in place (the same values to the bit) unless its tensors
        # were handed out: allocating ~5 MB anew at each improvement cost more than the copy (page faults).
        kept = self._best_weights
        if (
            kept is not None
            and not self._best_shared
            and kept.keys() == source.keys()
            and all(_same_layout(kept[k], v) for k, v in source.items())
        ):
            with torch.no_grad():
                for k, v in source.items():
                    if isinstance(v, torch.Tensor):
                        kept[k].copy_(v)
                    else:
                        kept[k] = v
            return
        self._best_weights = {
            k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v for k, v in source.items()
        }
        self._best_shared = False

    def _own_check(self, trainer: pl.Trainer) -> None:
        if self.driven or self.monitor is None or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        current = float(torch.as_tensor(value).detach().float().squeeze().cpu())
        if trainer.world_size > 1:
            current = trainer.strategy.broadcast(current, src=0)
        self.observe(trainer, trainer.current_epoch, current)

    # ------------------------------------------------------------------ hooks

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage
        if stage != "fit":
            return
        if self.monitor is None:
            self._follow(trainer)
        if self.source == "checkpoint":
            self._checkpoint_callback = self._matching_checkpoint(trainer)

    def _follow(self, trainer: pl.Trainer) -> None:
        stopper = trainer.early_stopping_callback
        if stopper is None:
            raise CallbackConfigError(
                "RestoreBestWeights(monitor=None) follows the trainer's EarlyStopping callback, and there is none; "
                "give `monitor` (and `mode`), or add an EarlyStopping."
            )
        self.monitor, self.mode = stopper.monitor, stopper.mode
        if hasattr(stopper, "start_from_epoch"):  # lightning_reg's: min_delta as given
            self.min_delta, self.start_from_epoch = stopper.min_delta, stopper.start_from_epoch
        else:  # Lightning's keeps min_delta negated for mode "min"
            self.min_delta = float(stopper.min_delta) * (1.0 if stopper.mode == "max" else -1.0)
        self.reset()

    def _matching_checkpoint(self, trainer: pl.Trainer) -> ModelCheckpoint:
        found = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        matching = [cb for cb in found if cb.monitor == self.monitor and cb.mode == self.mode and cb.save_top_k != 0]
        if not matching:
            have = ", ".join(f"ModelCheckpoint(monitor={cb.monitor!r}, mode={cb.mode!r})" for cb in found) or "none"
            raise CallbackConfigError(
                f"`restore_from='checkpoint'` needs a ModelCheckpoint with monitor={self.monitor!r}, "
                f"mode={self.mode!r} and save_top_k != 0 to reload the best weights from; got {have}. "
                "Add one, or use restore_from='memory'."
            )
        if self.min_delta != 0:
            rank_zero_warn(
                f"RestoreBestWeights(source='checkpoint', min_delta={self.min_delta}): ModelCheckpoint has no "
                "min_delta, so its best checkpoint may be a later epoch than this callback's best_epoch."
            )
        return matching[0]

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.restored_epoch = None

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.monitor is not None and self.monitor in trainer.callback_metrics and not trainer.sanity_checking:
            self._from_validation = True
            self._own_check(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._from_validation:  # a training metric: no validation logs it
            self._own_check(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # WeightAveraging copies its average into the model in its own on_train_end: restore after it, whatever
        # the callback order.
        if not averaging_callbacks(trainer):
            self.restore(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if averaging_callbacks(trainer):
            self.restore(trainer, pl_module)

    def restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Load the best weights into ``pl_module`` (warns and keeps the final weights when there are none)."""
        if self.source == "memory":
            if self._best_weights is None:
                rank_zero_warn(
                    f"RestoreBestWeights: no finite `{self.monitor}` was recorded; the final weights are kept."
                )
                return
            pl_module.load_state_dict(self._best_weights)
            self.restored_epoch = self.best_epoch
        else:
            path = getattr(self._checkpoint_callback, "best_model_path", "")
            if not path:
                rank_zero_warn(
                    "RestoreBestWeights: the ModelCheckpoint saved no best checkpoint; the final weights are kept."
                )
                return
            trainer.strategy.barrier("RestoreBestWeights.restore")
            # Only the tensors: nothing pickled in the file is imported or run.
            checkpoint = load_checkpoint_tensors(path)
            pl_module.load_state_dict(checkpoint["state_dict"])
            self.restored_epoch = int(checkpoint.get("epoch", -1))
        if self.verbose:
            rank_zero_info(f"Restored the weights of epoch {self.restored_epoch} (best {self.monitor}).")

    # ------------------------------------------------------------------ state

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "best_value": float(self.best_value),
            "best_epoch": self.best_epoch,
            "best_weights": self._handed_out(),
            "from_validation": self._from_validation,
        }

    def _handed_out(self) -> dict[str, Any] | None:
        weights = self.best_weights  # marks them shared: the next improvement writes a fresh copy
        return dict(weights) if weights is not None else None

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.driven:  # a driving EarlyStopping finds this state itself in older checkpoints
            warn_if_state_missing(self, trainer, checkpoint, "the best weights start over at the resumed epoch.")

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage not in (None, "fit"):
            return  # trainer.test/validate(ckpt_path=...) must not rewind the record of the fit that just ended
        self.best_value = float(state_dict.get("best_value", self.best_value))
        self.best_epoch = state_dict.get("best_epoch")
        weights = state_dict.get("best_weights")
        self.best_weights = dict(weights) if weights is not None else None
        self._from_validation = bool(state_dict.get("from_validation", False))

    def run_summary(self) -> dict[str, Any]:
        """What the train entry point writes under ``metrics.json["callbacks"][state_key]``.

        Example:
            >>> RestoreBestWeights("val/acc").run_summary()["mode"]
            'max'
        """
        best = self.best_value if math.isfinite(self.best_value) else None
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "source": self.source,
            "best_epoch": self.best_epoch,
            "best_score": best,
            "restored_epoch": self.restored_epoch,
        }
