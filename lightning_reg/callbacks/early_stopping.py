"""Early stopping that extends Lightning's: restore best weights, warm-up, baseline, Prechelt criteria.

The criteria are objects in :mod:`lightning_reg.core.stopping` (their parameters, state, decision and message);
this module is the Lightning glue: it reads one value per validation check and hands it to the criterion,
applies Lightning's own rules (non-finite value, thresholds), defers a stop that comes before
``min_epochs``/``min_steps``, reduces the decision across ranks, logs the criterion's diagnostics, keeps the
best weights and puts them back at the end of ``fit``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Generic, TypeVar, overload

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from typing_extensions import override

from lightning_reg._lightning_internals import (
    EarlyStoppingHooks,
    EarlyStoppingReason,
    averaging_callbacks,
    evaluated_module,
    store_epoch_end_values,
)
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import warn_if_state_missing
from lightning_reg.core import stopping
from lightning_reg.core.stopping import (
    Criterion,
    check_criterion_options,
    check_mode_matches,
    criterion_class,
    infer_mode,
    is_improvement,
    is_worse,
    make_criterion,
)
from lightning_reg.errors import ConfigError, check_bool, check_choice, check_int, check_non_negative, check_range
from lightning_reg.safe_load import load_checkpoint_tensors

__all__ = ["CRITERIA", "MODES", "RESTORE_FROM", "EarlyStopping", "MissingMetricError"]

log = logging.getLogger(__name__)

CRITERIA = tuple(stopping.CRITERIA)  # the config names: "patience", "GL", "PQ", "UP"
MODES = ("min", "max", "auto")
RESTORE_FROM = ("memory", "checkpoint")

# Lightning's enum has no member for our extra rules; they are all "the metric stopped improving".
_LIGHTNING_REASON = {
    "non_finite": EarlyStoppingReason.NON_FINITE_METRIC,
    "loss_non_finite": EarlyStoppingReason.NON_FINITE_METRIC,
    "stopping_threshold": EarlyStoppingReason.STOPPING_THRESHOLD,
    "divergence_threshold": EarlyStoppingReason.DIVERGENCE_THRESHOLD,
    "patience": EarlyStoppingReason.PATIENCE_EXHAUSTED,
    "baseline": EarlyStoppingReason.PATIENCE_EXHAUSTED,
    "GL": EarlyStoppingReason.PATIENCE_EXHAUSTED,
    "PQ": EarlyStoppingReason.PATIENCE_EXHAUSTED,
    "UP": EarlyStoppingReason.PATIENCE_EXHAUSTED,
}


class MissingMetricError(ConfigError, RuntimeError):
    """A monitored metric is not logged. A ``RuntimeError`` like Lightning's, and a :class:`ConfigError`.

    Example:
        >>> issubclass(MissingMetricError, RuntimeError) and issubclass(MissingMetricError, ConfigError)
        True
    """


_T = TypeVar("_T")


class _OnCriterion(Generic[_T]):
    """An attribute of the callback that lives on its criterion object (``callback.rule``): one copy of it.

    Parameters the callback takes for every criterion but this criterion does not use (``alpha`` for
    ``"patience"``...) are kept on the callback (``_unused_options``), as they were given.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _OnCriterion[_T]: ...

    @overload
    def __get__(self, obj: EarlyStopping, owner: type | None = None) -> _T: ...

    def __get__(self, obj: EarlyStopping | None, owner: type | None = None) -> _OnCriterion[_T] | _T:
        if obj is None:
            return self
        rule = obj.rule
        if hasattr(rule, self.name):
            return getattr(rule, self.name)
        return obj._unused_options[self.name]

    def __set__(self, obj: EarlyStopping, value: _T) -> None:
        if hasattr(obj.rule, self.name):
            setattr(obj.rule, self.name, value)
        else:
            obj._unused_options[self.name] = value


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


_ITEM_IS_FLOAT32 = (torch.float32, torch.float16, torch.bfloat16)


def _monitored_value(value: Any) -> float:
    """A monitored value as a Python float, through float32 as Lightning's ``EarlyStopping`` compares them.

    Not :func:`lightning_reg.callbacks.history.to_float`: that one keeps float64 and returns None for non-numbers.
    """
    if isinstance(value, torch.Tensor):
        if value.dtype in _ITEM_IS_FLOAT32:  # .item() gives the same number without 4 tensor ops (~3.5 µs)
            return float(value.item())
        return float(value.detach().float().squeeze().cpu().item())
    return float(value)


class EarlyStopping(EarlyStoppingHooks):
    """Lightning's ``EarlyStopping`` plus restore-best-weights, warm-up, baseline and Prechelt's criteria.

    It takes every argument of :class:`lightning.pytorch.callbacks.EarlyStopping` (same meaning, same
    defaults), keeps its DDP stop reduction, ``stopping_reason`` and ``stopped_epoch``, and adds:

    Args:
        monitor: Metric to watch, as logged (e.g. ``"val/loss"``).
        min_delta: An improvement must beat the best value by more than this.
        patience: Checks without improvement before stopping (``criterion="patience"``); with ``baseline``,
            the number of checks within which the baseline must be beaten, for every criterion.
        verbose: Log each decision.
        mode: ``"min"``, ``"max"`` or ``"auto"``. ``"auto"`` picks ``"max"`` when the monitor name has a
            piece ``acc, accuracy, auc, auroc, f1, precision`` or ``recall`` (split at ``/ _ . -``), else
            ``"min"`` (the default). A ``"min"``/``"max"`` that contradicts the name (``"max"`` on ``val/loss``,
            ``"min"`` on ``val/acc``) is a ConfigError.
        strict: Raise when ``monitor`` (or ``train_monitor``) is not logged; the error lists what is.
        check_finite: Stop when the monitored value is NaN or infinite.
        stopping_threshold: Stop once the monitored value is better than this.
        divergence_threshold: Stop once the monitored value is worse than this.
        check_on_train_epoch_end: Check at the end of the training epoch (default when validation runs
            once per epoch) rather than at the end of validation.
        log_rank_zero_only: Log the verbose messages on rank 0 only.
        restore_best_weights: At the end of ``fit`` load the weights of the best check into the model on
            every rank, however training ended (this callback, ``max_epochs``, another callback). The
            weights are the ones validation *evaluated*: with Lightning's ``EMAWeightAveraging`` (or any
            ``WeightAveraging``) that is the average at the best check, not the trained weights, and the restore
            then happens at ``on_fit_end``, after the averaging callback has copied its final average in.
        restore_from: ``"memory"`` keeps a CPU copy of the best ``state_dict`` (also saved in the
            checkpoint, so it survives resume); ``"checkpoint"`` reloads the best checkpoint of a
            ``ModelCheckpoint`` that monitors the same metric in the same mode (no extra memory).
        start_from_epoch: Checks in epochs before this one do not count toward patience and cannot stop
            training (except a non-finite value); the best value and weights are still tracked.
        baseline: Stop when ``patience`` counted checks pass without a value better than this.
        criterion: ``"patience"``, ``"GL"`` (generalization loss > ``alpha``), ``"PQ"`` (GL / training
            progress > ``alpha`` at the end of a strip) or ``"UP"`` (worse in ``s`` successive strips).
        alpha: Threshold of ``GL`` and ``PQ`` (> 0; required for them).
        strip: Strip length ``k`` in checks for ``PQ`` and ``UP`` (Prechelt's default 5).
        s: Number of successive worsening strips for ``UP`` (>= 1; required for it).
        train_monitor: Logged training loss for ``PQ``'s training progress (required for ``PQ``).
        log_prefix: Prefix of the logged diagnostics (``<prefix>wait``, ``<prefix>gl`` and, for PQ/UP,
            ``<prefix>pk``/``<prefix>up``); ``None`` logs nothing. Give two instances different prefixes.

    The criterion is an object, :attr:`rule` (a :class:`lightning_reg.core.stopping.Criterion`): it holds
    ``patience``, ``alpha``, ``strip``, ``s``, ``baseline``, the recorded ``history``, ``best_value``,
    ``wait_count`` and ``last_gl``, which read and write through to it as attributes of this callback.

    A stop that falls due before ``trainer.min_epochs``/``min_steps`` is not signalled: the rule is
    evaluated again at every later check, and training stops at the first check where stopping is
    allowed *and* the rule still says stop. Lightning's callback sets ``trainer.should_stop`` at once,
    which then stops training at ``min_epochs`` even if the metric improved in between (Lightning #19966).

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning_reg import EarlyStopping
        >>> es = EarlyStopping("val/acc", mode="auto", patience=2, restore_best_weights=True)
        >>> es.mode
        'max'
        >>> gl = EarlyStopping("val/loss", criterion="GL", alpha=5.0, log_prefix="es_gl/")
        >>> trainer = pl.Trainer(callbacks=[es, gl], logger=False)  # two instances coexist
        >>> es.state_key != gl.state_key
        True
        >>> gl.rule
        GeneralizationLoss(alpha=5.0, mode='min', min_delta=0.0, baseline=None)
    """

    # Attributes that live on the criterion object (Lightning's __init__ sets the first three).
    wait_count = _OnCriterion[int]()
    patience = _OnCriterion[int]()
    mode = _OnCriterion[str]()
    baseline = _OnCriterion[float | None]()
    alpha = _OnCriterion[float | None]()
    strip = _OnCriterion[int]()
    s = _OnCriterion[int | None]()
    history = _OnCriterion[list[float]]()
    train_history = _OnCriterion[list[float]]()
    best_value = _OnCriterion[float]()
    baseline_beaten = _OnCriterion[bool]()
    last_gl = _OnCriterion[float | None]()

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "auto",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        *,
        restore_best_weights: bool = False,
        restore_from: str = "memory",
        start_from_epoch: int = 0,
        baseline: float | None = None,
        criterion: str = "patience",
        alpha: float | None = None,
        strip: int = 5,
        s: int | None = None,
        train_monitor: str | None = None,
        log_prefix: str | None = "es/",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"`monitor` must be the name of a logged metric, e.g. 'val/loss'; got {monitor!r}.")
        check_non_negative("min_delta", min_delta)
        check_int("patience", patience, low=0)
        check_choice("mode", mode, MODES)
        criterion_cls = criterion_class(criterion)
        alpha, strip, s = check_criterion_options(criterion_cls, alpha=alpha, strip=strip, s=s)
        if criterion_cls.needs_train and (not isinstance(train_monitor, str) or not train_monitor):
            raise ConfigError(
                "`train_monitor` must name the logged training loss (e.g. 'train/loss') for criterion "
                f"{criterion_cls.name!r}, which needs the training progress P_k; got {train_monitor!r}."
            )
        check_int("start_from_epoch", start_from_epoch, low=0)
        check_choice("restore_from", restore_from, RESTORE_FROM)
        if baseline is not None:
            baseline = check_range("baseline", baseline)
        for name, value in (("stopping_threshold", stopping_threshold), ("divergence_threshold", divergence_threshold)):
            if value is not None:
                check_range(name, value)
        if log_prefix is not None and not isinstance(log_prefix, str):
            raise ConfigError(
                f"`log_prefix` must be a string such as 'es/' (or None: log nothing); got {log_prefix!r}."
            )

        check_mode_matches(monitor, mode)
        for flag, value in (
            ("verbose", verbose),
            ("strict", strict),
            ("check_finite", check_finite),
            ("log_rank_zero_only", log_rank_zero_only),
        ):
            check_bool(flag, value)
        if check_on_train_epoch_end is not None:
            check_bool("check_on_train_epoch_end", check_on_train_epoch_end)
        resolved_mode = infer_mode(monitor) if mode == "auto" else mode
        #: The criterion: its parameters, its state over the checks, its decision and message.
        self.rule: Criterion = make_criterion(
            criterion,
            alpha=alpha,
            strip=strip,
            s=s,
            patience=patience,
            mode=resolved_mode,
            min_delta=min_delta,
            baseline=baseline,
            monitor=monitor,
        )
        self._unused_options: dict[str, Any] = {"alpha": alpha, "strip": strip, "s": s}
        super().__init__(
            monitor=monitor,
            min_delta=min_delta,
            patience=patience,
            verbose=verbose,
            mode=resolved_mode,
            strict=strict,
            check_finite=check_finite,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_on_train_epoch_end=check_on_train_epoch_end,
            log_rank_zero_only=log_rank_zero_only,
        )
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.restore_from = restore_from
        self.start_from_epoch = start_from_epoch
        self.train_monitor = train_monitor
        self.log_prefix = log_prefix
        self._stage: str | None = None
        self._reset_run_state()

    def _reset_run_state(self) -> None:
        self.rule.reset()
        self.check_epochs: list[int] = []
        self.best_epoch: int | None = None
        self._best_weights: dict[str, Any] | None = None
        self._best_shared = True
        self.stop_reason: str | None = None
        self._bad_loss: tuple[str, float] | None = None
        self.deferred_epochs: list[int] = []
        self.restored_epoch: int | None = None
        self.ended_by: str | None = None
        self._checkpoint_callback: ModelCheckpoint | None = None
        # The monitored value at the last validation end, kept in the checkpoint: a run resumed from a
        # checkpoint written there replays that epoch's end without the (uncheckpointed) logged metrics.
        self._val_snapshot: dict[str, Any] | None = None
        self._trained_since_start = False

    # ------------------------------------------------------------------ identity and state

    @property
    def criterion(self) -> str:
        """The criterion's config name: ``"patience"``, ``"GL"``, ``"PQ"`` or ``"UP"``."""
        return self.rule.name

    @property
    def best_weights(self) -> dict[str, Any] | None:
        """CPU copy of the best check's ``state_dict`` (``restore_from="memory"``), or None.

        Its tensors never change once read here: the next improvement then writes a fresh copy.
        """
        self._best_shared = True
        return self._best_weights

    @best_weights.setter
    def best_weights(self, value: dict[str, Any] | None) -> None:
        self._best_weights = value
        self._best_shared = True  # tensors from elsewhere (a checkpoint, a caller) are never written into

    @property
    @override
    def state_key(self) -> str:
        # Memoized: Lightning reads it at every hook call (see lightning_reg.callbacks._state_key). The key's
        # criterion parameters are read off the criterion object directly (its class, mode and own options).
        rule = self.rule
        own = rule.__dict__
        return memo_state_key(
            self,
            (
                self.monitor,
                self.restore_best_weights,
                type(rule),
                rule.mode,
                rule.patience,
                own.get("alpha"),
                own.get("strip"),
                own.get("s"),
            ),
            self._build_state_key,
        )

    def _build_state_key(self) -> str:
        params = self.rule.key_params()
        if self.restore_best_weights:
            params["restore_best_weights"] = True
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, criterion=self.criterion, **params)

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(self.rule.state_dict())  # history, train_history, best_value, wait_count, baseline_beaten
        state.update(
            {
                "check_epochs": [int(e) for e in self.check_epochs],
                "best_epoch": self.best_epoch,
                "stop_reason": self.stop_reason,
                "deferred_epochs": [int(e) for e in self.deferred_epochs],
                "best_weights": dict(self.best_weights) if self.best_weights is not None else None,
                "val_snapshot": dict(self._val_snapshot) if self._val_snapshot is not None else None,
            }
        )
        return state

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(
            self, trainer, checkpoint, "patience, the best value and the best weights start over at the resumed epoch."
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage not in (None, "fit"):
            # trainer.test/validate(ckpt_path=...) restores callback states too; that must not rewind the
            # record of the fit that just ended (stopped_epoch, best_epoch, reason).
            return
        self.rule.load_state_dict(state_dict)
        best_score = state_dict.get("best_score")
        if "best_value" not in state_dict and best_score is not None:  # a state saved by Lightning's callback
            self.best_value = _monitored_value(best_score)
        self.best_score = torch.tensor(self.best_value, dtype=torch.float64)
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        reason_value = state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED.value)
        self.stopping_reason = EarlyStoppingReason(reason_value)
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        self.check_epochs = [int(e) for e in state_dict.get("check_epochs", [])]
        self.best_epoch = state_dict.get("best_epoch")
        self.stop_reason = state_dict.get("stop_reason")
        self.deferred_epochs = [int(e) for e in state_dict.get("deferred_epochs", [])]
        weights = state_dict.get("best_weights")
        self.best_weights = dict(weights) if weights is not None else None
        snapshot = state_dict.get("val_snapshot")
        self._val_snapshot = dict(snapshot) if snapshot is not None else None

    # ------------------------------------------------------------------ hooks

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._stage = stage
        if stage != "fit" or not (self.restore_best_weights and self.restore_from == "checkpoint"):
            return
        found = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)]
        matching = [cb for cb in found if cb.monitor == self.monitor and cb.mode == self.mode and cb.save_top_k != 0]
        if not matching:
            have = ", ".join(f"ModelCheckpoint(monitor={cb.monitor!r}, mode={cb.mode!r})" for cb in found) or "none"
            raise ConfigError(
                f"`restore_from='checkpoint'` needs a ModelCheckpoint with monitor={self.monitor!r}, "
                f"mode={self.mode!r} and save_top_k != 0 to reload the best weights from; got {have}. "
                "Add one, or use restore_from='memory'."
            )
        self._checkpoint_callback = matching[0]
        if self.rule.min_delta > 0:
            rank_zero_warn(
                f"EarlyStopping(restore_from='checkpoint', min_delta={self.rule.min_delta}): ModelCheckpoint has no "
                "min_delta, so its best checkpoint may be a later epoch than this callback's best_epoch."
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trained_since_start = False

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._trained_since_start = True

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.should_skip_check(trainer):
            # One read: Lightning's callback_metrics property re-aggregates every logged result on each read.
            value = trainer.callback_metrics.get(self.monitor)
            if value is not None:
                self._val_snapshot = {
                    "epoch": int(trainer.current_epoch),
                    "step": int(trainer.global_step),
                    "value": _monitored_value(value),
                }
        super().on_validation_end(trainer, pl_module)

    def _replayed_logs(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """``callback_metrics``, plus the monitored value from the checkpoint when Lightning replays an epoch end.

        A run resumed from a checkpoint written at the end of validation (``ModelCheckpoint``'s default when
        validation runs every epoch) first runs that epoch's ``on_train_epoch_end`` without training or
        validating, so nothing is logged. The uninterrupted run checked the value validation logged; it is
        in this callback's checkpointed state, so the resumed run takes the same decision. None: skip the check.
        """
        logs = dict(trainer.callback_metrics)
        if self.monitor in logs or self._trained_since_start or trainer.ckpt_path is None:
            return logs
        snap = self._val_snapshot
        if snap is None or snap.get("epoch") != trainer.current_epoch or snap.get("step") != trainer.global_step:
            # The checkpoint has no value for this replayed check (it was written before this callback was
            # added): the uninterrupted run had no such check either.
            return None
        logs[self.monitor] = torch.tensor(float(snap["value"]))
        if self.train_monitor and self.train_monitor not in logs:
            rank_zero_warn(
                f"EarlyStopping: the check of epoch {trainer.current_epoch} is skipped after resuming: the "
                f"checkpoint was written at the end of validation, before `{self.train_monitor}` (needed by "
                "criterion 'PQ') was aggregated, and Lightning does not checkpoint logged metrics. Save "
                "checkpoints at the end of the training epoch (ModelCheckpoint(save_on_train_epoch_end=True)) "
                "for exact PQ resumes."
            )
            return None
        return logs

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # WeightAveraging copies its average into the model in its own on_train_end; restore after it,
        # whatever the callback order.
        if averaging_callbacks(trainer):
            return
        self._end_of_training(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if averaging_callbacks(trainer):
            self._end_of_training(trainer, pl_module)

    def _end_of_training(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stop_reason is not None:
            self.ended_by = "early_stopping"
        elif trainer.should_stop:
            self.ended_by = "should_stop"
        else:
            self.ended_by = "limit"
        if not self.restore_best_weights:
            return
        if self.restore_from == "memory":
            if self._best_weights is None:
                rank_zero_warn(f"EarlyStopping: no finite `{self.monitor}` was recorded; the final weights are kept.")
                return
            pl_module.load_state_dict(self._best_weights)
            self.restored_epoch = self.best_epoch
        else:
            self._restore_from_checkpoint(trainer, pl_module)
        self._info(trainer, f"Restored the weights of epoch {self.restored_epoch} (best {self.monitor}).")

    def _restore_from_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cb = self._checkpoint_callback
        path = getattr(cb, "best_model_path", "") if cb is not None else ""
        if not path:
            rank_zero_warn("EarlyStopping: the ModelCheckpoint saved no best checkpoint; the final weights are kept.")
            return
        trainer.strategy.barrier("EarlyStopping.restore")
        # Only the tensors are needed: nothing pickled in the file is imported or run (hyperparameter objects
        # come back inert).
        checkpoint = load_checkpoint_tensors(path)
        pl_module.load_state_dict(checkpoint["state_dict"])
        self.restored_epoch = int(checkpoint.get("epoch", -1))

    # ------------------------------------------------------------------ the check

    def _missing(self, name: str, logs: dict[str, Any], role: str) -> MissingMetricError:
        logged = ", ".join(f"`{k}`" for k in sorted(logs)) or "(nothing logged yet)"
        return MissingMetricError(
            f"EarlyStopping: `{role}` is {name!r}, which is not logged at this check "
            f"(epoch end of {'training' if self.checks_on_train_epoch_end else 'validation'}). "
            f"Logged metrics: {logged}. Log it with self.log({name!r}, ...) or set `{role}` to one of these."
        )

    @override
    def validate_logged(self, logs: dict[str, Any]) -> bool:
        for name, role in ((self.monitor, "monitor"), (self.train_monitor, "train_monitor")):
            if name is None or name in logs:
                continue
            if self.strict:
                raise self._missing(name, logs, role)
            if self.verbose:
                rank_zero_warn(str(self._missing(name, logs, role)), category=RuntimeWarning)
            return False
        return True

    def _synced_values(self, trainer: pl.Trainer, logs: dict[str, Any]) -> tuple[float, float]:
        """Rank 0's values, so every rank takes the same decisions and keeps the same best weights."""
        current = _monitored_value(logs[self.monitor])
        train = _monitored_value(logs[self.train_monitor]) if self.train_monitor else math.nan
        if trainer.world_size > 1:
            current, train = trainer.strategy.broadcast((current, train), src=0)
        return current, train

    def _can_stop_now(self, trainer: pl.Trainer) -> bool:
        fit_loop = trainer.fit_loop
        min_epochs = fit_loop.min_epochs or 0
        min_steps = fit_loop.min_steps or 0
        # A stop signalled now takes effect at the end of this epoch at the latest.
        return trainer.current_epoch + 1 >= min_epochs and trainer.global_step >= min_steps

    @override
    def run_stopping_check(self, trainer: pl.Trainer) -> None:
        logs = self._replayed_logs(trainer)
        # `fast_dev_run` is set on the trainer by Lightning's debugging-flags setup (mypy cannot see it).
        if getattr(trainer, "fast_dev_run", False) or logs is None or not self.validate_logged(logs):
            return
        current, train_value = self._synced_values(trainer, logs)
        epoch = trainer.current_epoch
        counted = epoch >= self.start_from_epoch
        self.check_epochs.append(epoch)
        rule_reason = self.rule.update(current, train_value if self.train_monitor else None, counted=counted)
        if self.rule.improved:
            self.best_score = torch.tensor(current, dtype=torch.float64)
            self.best_epoch = epoch
            if self.restore_best_weights and self.restore_from == "memory":
                self._keep_best_weights(trainer)

        reason = self._decide(current, counted, rule_reason)
        if self.check_finite and reason != "non_finite":
            # The monitor may stay finite (val/acc of NaN logits) while the loss is NaN: say so, not "patience".
            self._bad_loss = next(
                (
                    (k, float(v))
                    for k, v in sorted(logs.items())
                    if "loss" in k and k != self.monitor and not math.isfinite(float(v))
                ),
                None,
            )
            if self._bad_loss is not None:
                reason = "loss_non_finite"
        if reason is not None and not self._can_stop_now(trainer):
            self.deferred_epochs.append(epoch)
            self._info(
                trainer,
                f"Stop due at epoch {epoch} ({reason}) deferred: min_epochs={trainer.fit_loop.min_epochs}, "
                f"min_steps={trainer.fit_loop.min_steps} not reached; the rule is evaluated again at each check.",
            )
            reason = None

        should_stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and reason is not None:
            self.stopped_epoch = epoch
            self.stop_reason = reason
            self.stopping_reason = _LIGHTNING_REASON[reason]
            self.stopping_reason_message = self._message(reason, current)
            self._info(trainer, self.stopping_reason_message)
        self._log_diagnostics(trainer)

    def _keep_best_weights(self, trainer: pl.Trainer) -> None:
        """A CPU copy of the weights validation just evaluated (under EMA/weight averaging, the average).

        The first improvement allocates the copy. Later ones write into it in place (``copy_``, the same values
        to the bit), as long as nobody outside this callback was handed its tensors (``best_weights`` read,
        ``state_dict()`` for a checkpoint) and the layout is unchanged; otherwise they allocate a fresh copy, so
        tensors handed out never change. Allocating ~5 MB anew at each improvement cost more than the copy
        itself (first-touch page faults).
        """
        source = evaluated_module(trainer).state_dict()
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

    def _decide(self, current: float, counted: bool, rule_reason: str | None) -> str | None:
        """Lightning's rules first (non-finite value, thresholds), then the criterion's decision."""
        if self.check_finite and not math.isfinite(current):
            return "non_finite"
        if not counted:
            return None
        if self.stopping_threshold is not None and is_improvement(current, self.stopping_threshold, self.mode):
            return "stopping_threshold"
        if self.divergence_threshold is not None and is_worse(current, self.divergence_threshold, self.mode):
            return "divergence_threshold"
        return rule_reason

    def _message(self, reason: str, current: float) -> str:
        best = f"Best {self.monitor} = {self.best_value:.5g} at epoch {self.best_epoch}."
        if reason == "non_finite":
            return f"Monitored metric {self.monitor} = {current} is not finite. {best} Signaling Trainer to stop."
        if reason == "loss_non_finite":
            name, value = self._bad_loss or ("loss", float("nan"))
            return (
                f"The loss became non-finite: {name} = {value} (the monitored {self.monitor} = {current:.5g} is "
                f"still finite). {best} Signaling Trainer to stop."
            )
        if reason == "stopping_threshold":
            return f"Stopping threshold reached: {self.monitor} = {current:.5g} beats {self.stopping_threshold}. {best}"
        if reason == "divergence_threshold":
            return f"Divergence threshold reached: {self.monitor} = {current:.5g} is worse than {self.divergence_threshold}. {best}"
        return f"{self.rule.message(reason)} {best}"

    def _info(self, trainer: pl.Trainer, message: str) -> None:
        if self.verbose:
            self.log_info(trainer, message, self.log_rank_zero_only)

    def _log_diagnostics(self, trainer: pl.Trainer) -> None:
        if self.log_prefix is None:
            return
        metrics = {f"{self.log_prefix}{name}": value for name, value in self.rule.diagnostics().items()}
        pl_module = trainer.lightning_module
        if self.checks_on_train_epoch_end:
            # Without loggers, self.log's only trace is the value in callback_metrics/logged_metrics: put it there
            # directly (the same tensor, ~0.5 ms per value less). With loggers, self.log puts it in the epoch's row.
            if trainer.loggers or not store_epoch_end_values(trainer, metrics, pl_module.device):
                for name, value in metrics.items():
                    pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)
        else:
            # self.log is not allowed in on_validation_end: write to the loggers directly.
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)

    # ------------------------------------------------------------------ reporting

    def run_summary(self) -> dict[str, Any]:
        """What the train entry point writes under ``metrics.json["callbacks"][state_key]``.

        Example:
            >>> EarlyStopping("val/loss").run_summary()["stopped"]
            False
        """
        best = self.best_value if math.isfinite(self.best_value) else None
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "criterion": self.criterion,
            "stopped": self.stop_reason is not None,
            "stopped_epoch": self.stopped_epoch if self.stop_reason is not None else None,
            "reason": self.stop_reason,
            "stopping_reason": self.stopping_reason.name,
            "message": self.stopping_reason_message,
            "ended_by": self.ended_by,
            "best_epoch": self.best_epoch,
            "best_score": best,
            "wait_count": self.wait_count,
            "checks": len(self.history),
            "deferred_epochs": list(self.deferred_epochs),
            "last_gl": self.last_gl,
            "restore_best_weights": self.restore_best_weights,
            "restore_from": self.restore_from if self.restore_best_weights else None,
            "restored_epoch": self.restored_epoch,
        }
