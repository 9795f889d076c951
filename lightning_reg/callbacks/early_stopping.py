"""Early stopping with Lightning's arguments and Keras' extras: warm-up, baseline, restore, Prechelt's criteria.

The decision is a criterion object of :mod:`lightning_reg.core.stopping` (its options, state, rule and message);
restoring the best weights is :class:`~lightning_reg.callbacks.restore_best_weights.RestoreBestWeights`. This
module is the Lightning glue: it reads one value per check, defers a stop that falls before ``min_epochs``, reduces
the decision across ranks, logs the criterion's diagnostics and keeps the state a resume needs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_prefixed_message, rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_reg._lightning_internals import EarlyStoppingReason, store_epoch_end_values, trainer_callbacks
from lightning_reg.callbacks._early_stopping_legacy import legacy_state
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.config_error import CallbackConfigError, lightning_config_errors
from lightning_reg.callbacks.log_helpers import warn_if_state_missing
from lightning_reg.callbacks.restore_best_weights import SOURCES, RestoreBestWeights
from lightning_reg.core.stopping import Criterion, check_mode_matches, make_criterion, metric_name, named_direction
from lightning_reg.errors import ConfigError, check_bool, check_choice, check_int

__all__ = ["MODES", "EarlyStopping", "MissingMetricError"]

# Lightning's logger: a user's logging set-up for Lightning's early-stopping lines applies to ours.
log = logging.getLogger("lightning.pytorch.callbacks.early_stopping")

MODES = ("min", "max", "auto")
DEFAULT_LOG_PREFIX = "es/"
_REASONS = {
    "non_finite": EarlyStoppingReason.NON_FINITE_METRIC,
    "loss_non_finite": EarlyStoppingReason.NON_FINITE_METRIC,
    "stopping_threshold": EarlyStoppingReason.STOPPING_THRESHOLD,
    "divergence_threshold": EarlyStoppingReason.DIVERGENCE_THRESHOLD,
}  # every other reason (a criterion's own, the baseline) is "patience exhausted"


class MissingMetricError(ConfigError, RuntimeError):
    """A monitored metric is not logged: a ``RuntimeError`` like Lightning's, and a :class:`ConfigError`.

    Example:
        >>> issubclass(MissingMetricError, RuntimeError) and issubclass(MissingMetricError, ConfigError)
        True
    """


def _as_float(value: Any) -> float:
    """A logged value as a Python float, through float32 as Lightning compares them (squeezed, like Lightning)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().squeeze().float().cpu().item())
    return float(value)


class EarlyStopping(_LightningEarlyStopping):
    """Stop when a monitored metric stops improving: Lightning's arguments and defaults, plus Keras' and Prechelt's.

    A subclass of Lightning's ``EarlyStopping`` for identity only: Lightning runs ``on_train_epoch_end`` of
    early-stopping and checkpoint callbacks after the LightningModule's own hook, and ``trainer.early_stopping_callback``
    finds them by type. No Lightning method runs; the state is this class's own. ``docs/early_stopping.md`` compares it
    with Lightning's and Keras' argument by argument.

    Args:
        monitor: Metric to watch, as logged (e.g. ``"val/loss"``).
        min_delta: An improvement must beat the best by more than this; negative: Lightning's meaning (Keras: abs).
        patience: Checks without improvement before stopping.
        verbose: Log each decision, and the resolved mode once.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (default, as in Keras; Lightning's is ``"min"``): the direction of a
            known metric name (:data:`~lightning_reg.core.stopping.KNOWN_METRICS`); an unknown one is minimized, with
            a warning. A mode that contradicts a known name (``"max"`` on ``val/loss``) is refused.
        strict: Raise when ``monitor`` (or ``train_monitor``) is not logged; the error lists what is.
        check_finite: Stop at a NaN or infinite value (Keras counts it as no improvement).
        stopping_threshold: Stop once the value is better than this.
        divergence_threshold: Stop once the value is worse than this.
        check_on_train_epoch_end: Check at the training-epoch end (default when validation runs once per epoch).
        log_rank_zero_only: Log the verbose messages on rank 0 only.
        restore_best_weights: At the end of ``fit`` load the best check's weights, however training ended (through a
            :class:`RestoreBestWeights` fed by this callback's checks).
        restore_from: ``"memory"`` or ``"checkpoint"``: :class:`RestoreBestWeights`' ``source``.
        start_from_epoch: Earlier checks neither count nor can be restored (Keras); only a non-finite value stops.
        baseline: An improvement resets the wait only if it also beats this (Keras: an improving check never stops).
        baseline_deadline: Our earlier rule: stop once ``patience`` checks pass without beating ``baseline``.
        criterion: ``"patience"``, ``"GL"``, ``"PQ"``, ``"UP"``, another registered :class:`Criterion` subclass, or an
            instance (its own options set; the shared ones come from these arguments).
        alpha: Threshold of ``GL`` and ``PQ``. strip: Strip length of ``PQ`` and ``UP``. s: Strips of ``UP``.
        train_monitor: Logged training loss for ``PQ``'s training progress (required for ``PQ``).
        log_prefix: Prefix of the logged diagnostics (``<prefix>wait``, ``<prefix>gl`` ...); ``None`` logs nothing.

    A stop due before ``min_epochs``/``min_steps`` is evaluated again at each later check instead of being latched
    (Lightning #19966); it is signalled at once when ``min_steps`` falls before the next check, so training ends at
    that step, as with Lightning's.

    Example:
        >>> import lightning.pytorch as pl
        >>> es = EarlyStopping("val/acc", patience=2, restore_best_weights=True)
        >>> es.mode, es.state_key
        ('max', "EarlyStopping{'monitor': 'val/acc', 'mode': 'max'}")
        >>> gl = EarlyStopping("val/loss", criterion="GL", alpha=5.0, log_prefix="es_gl/")
        >>> trainer = pl.Trainer(callbacks=[es, gl], logger=False)  # two instances coexist
        >>> gl.rule
        GeneralizationLoss(alpha=5.0, mode='min', min_delta=0.0, baseline=None)
    """

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
        baseline_deadline: bool = False,
        criterion: str | Criterion = "patience",
        alpha: float | None = None,
        strip: int = 5,
        s: int | None = None,
        train_monitor: str | None = None,
        log_prefix: str | None = DEFAULT_LOG_PREFIX,
    ) -> None:
        if mode not in MODES:  # Lightning's words, so handlers matching its message still do
            raise CallbackConfigError(f"`mode` can be 'min', 'max' or 'auto', got {mode}.")
        with lightning_config_errors():
            if not isinstance(monitor, str) or not monitor:
                raise ConfigError(f"`monitor` must be the name of a logged metric, e.g. 'val/loss'; got {monitor!r}.")
            #: How the mode was chosen, said once at the start of a fit.
            self.mode_source = (
                "given"
                if mode != "auto"
                else ("auto, a known metric" if named_direction(monitor) else "auto, Lightning's default")
            )
            if mode == "auto":
                mode = named_direction(monitor) or self._unknown_direction(monitor)
            check_mode_matches(monitor, mode)
            shared: dict[str, Any] = dict(
                patience=patience, mode=mode, min_delta=min_delta, baseline=baseline, monitor=monitor,
                baseline_deadline=baseline_deadline, stopping_threshold=stopping_threshold,
                divergence_threshold=divergence_threshold, check_finite=check_finite,
            )  # fmt: skip
            if isinstance(criterion, Criterion):
                criterion.configure(**shared)
                self.rule = criterion
            else:
                self.rule = make_criterion(criterion, alpha=alpha, strip=strip, s=s, **shared)
            if self.rule.needs_train and (not isinstance(train_monitor, str) or not train_monitor):
                raise ConfigError(
                    "`train_monitor` must name the logged training loss (e.g. 'train/loss') for criterion "
                    f"{self.rule.name!r}, which needs the training progress P_k; got {train_monitor!r}."
                )
            for flag, value in (("verbose", verbose), ("strict", strict), ("log_rank_zero_only", log_rank_zero_only)):
                check_bool(flag, value)
            if check_on_train_epoch_end is not None:
                check_bool("check_on_train_epoch_end", check_on_train_epoch_end)
            self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
            self.restore_from = check_choice("restore_from", restore_from, SOURCES)
            self.start_from_epoch = check_int("start_from_epoch", start_from_epoch, low=0)
            if log_prefix is not None and not isinstance(log_prefix, str):
                raise ConfigError(
                    f"`log_prefix` must be a string such as 'es/' (or None: log nothing); got {log_prefix!r}."
                )
        self.monitor, self.verbose, self.strict = monitor, verbose, strict
        self.log_rank_zero_only, self.train_monitor, self.log_prefix = log_rank_zero_only, train_monitor, log_prefix
        self._check_on_train_epoch_end = check_on_train_epoch_end
        self.restorer: RestoreBestWeights | None = None
        self._stage: str | None = None
        self._reset()

    @staticmethod
    def _unknown_direction(monitor: str) -> str:
        rank_zero_warn(
            f"EarlyStopping(monitor={monitor!r}, mode='auto'): {metric_name(monitor)!r} is not a metric whose "
            "direction is known, so it is minimized (Lightning's default). Give mode='min' or mode='max'."
        )
        return "min"

    def _reset(self) -> None:
        self.rule.reset()
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.stop_reason: str | None = None
        self.best_epoch: int | None = None
        self.check_epochs: list[int] = []
        self.deferred_epochs: list[int] = []
        self.ended_by: str | None = None
        # The monitored value at the last validation end, kept in the checkpoint: a run resumed from a checkpoint
        # written there replays that epoch's end without the (uncheckpointed) logged metrics.
        self._val_snapshot: dict[str, Any] | None = None
        self._trained_since_start = False
        self._last_check_step = 0
        self._bad_loss = ""

    # The options and state that live on the criterion, under Lightning's attribute names.
    mode = property(lambda self: self.rule.mode)
    patience = property(lambda self: self.rule.patience)
    min_delta = property(lambda self: self.rule.min_delta)
    baseline = property(lambda self: self.rule.baseline)
    check_finite = property(lambda self: self.rule.check_finite)
    stopping_threshold = property(lambda self: self.rule.stopping_threshold)
    divergence_threshold = property(lambda self: self.rule.divergence_threshold)
    history = property(lambda self: self.rule.history)
    best_value = property(lambda self: self.rule.best_value)
    last_gl = property(lambda self: self.rule.last_gl)
    criterion = property(lambda self: self.rule.name)
    best_score = property(lambda self: torch.tensor(self.rule.best_value, dtype=torch.float64))

    @property
    def wait_count(self) -> int:
        return self.rule.wait_count

    @wait_count.setter
    def wait_count(self, value: int) -> None:
        self.rule.wait_count = int(value)

    @property
    @override
    def state_key(self) -> str:
        # Lightning's key ({'monitor', 'mode'}) for the patience rule with the default log prefix, so its checkpoints
        # and ours resume into each other; another criterion adds its name and options, another log prefix adds
        # itself, so instances on one metric can coexist (as our configs' es/ and es_restore/ do).
        params = () if self.rule.name == "patience" else tuple(self.rule.key_params().items())
        fingerprint = (self.monitor, self.rule.mode, self.rule.name, params, self.log_prefix)
        return memo_state_key(self, fingerprint, self._build_state_key)

    def _build_state_key(self) -> str:
        extra = {} if self.rule.name == "patience" else {"criterion": self.rule.name, **self.rule.key_params()}
        if self.log_prefix != DEFAULT_LOG_PREFIX:
            extra["log_prefix"] = self.log_prefix
        return self._generate_state_key(monitor=self.monitor, mode=self.mode, **extra)

    # ------------------------------------------------------------------ hooks

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._stage = stage
        if self._check_on_train_epoch_end is None:  # Lightning's rule: validation once per training epoch
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
        if stage != "fit":
            return
        callbacks = trainer_callbacks(trainer)
        if self.mode_source != "given":  # Lightning's default is "min"; say which way auto went
            rank_zero_info(
                f"EarlyStopping: {self.monitor} is {'maximized' if self.mode == 'max' else 'minimized'} (mode {self.mode!r}: {self.mode_source})."
            )
        if self.restore_best_weights and self.restorer not in callbacks:
            wanted = RestoreBestWeights(
                self.monitor, self.mode, self.min_delta, self.start_from_epoch, self.restore_from
            )
            same = [cb for cb in callbacks if isinstance(cb, RestoreBestWeights) and cb.state_key == wanted.state_key]
            self.restorer = same[0] if same else wanted  # one restorer per set of options, fed by each stopper
            self.restorer.driven = True
            if not same:
                callbacks.insert(callbacks.index(self) + 1, wanted)  # its setup runs next

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trained_since_start = False
        self._last_check_step = trainer.global_step

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._trained_since_start = True

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._skip(trainer):
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self._val_snapshot = {
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "value": _as_float(value),
            }
        if not self._check_on_train_epoch_end:
            self._run_early_stopping_check(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_on_train_epoch_end and not self._skip(trainer):
            self._run_early_stopping_check(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ended_by = "early_stopping" if self.stop_reason else ("should_stop" if trainer.should_stop else "limit")

    @staticmethod
    def _skip(trainer: pl.Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking

    # ------------------------------------------------------------------ the check

    @override
    def _run_early_stopping_check(self, trainer: pl.Trainer) -> None:
        """One check: read the value, update the criterion, defer or signal the stop, log the diagnostics."""
        logs = self._replayed_logs(trainer)
        if getattr(trainer, "fast_dev_run", False) or logs is None or not self._logged(logs):
            return
        current = _as_float(logs[self.monitor])
        train = _as_float(logs[self.train_monitor]) if self.train_monitor else math.nan
        if trainer.world_size > 1:  # rank 0's values: every rank takes the same decisions and keeps the same weights
            current, train = trainer.strategy.broadcast((current, train), src=0)
        epoch = trainer.current_epoch
        counted = epoch >= self.start_from_epoch
        reason = self.rule.update(current, train if self.train_monitor else None, counted=counted)
        if counted:
            self.check_epochs.append(epoch)
            if self.rule.improved:
                self.best_epoch = epoch
            if self.restorer is not None:
                self.restorer.observe(trainer, epoch, current)
        if reason is None and counted and self.check_finite:
            # The monitor may stay finite (val/acc of NaN logits) while the loss is NaN: say so, not "patience".
            bad = [
                k for k, v in sorted(logs.items()) if "loss" in k and k != self.monitor and not math.isfinite(float(v))
            ]
            if bad:
                reason, self._bad_loss = "loss_non_finite", f"{bad[0]} = {float(logs[bad[0]])}"
        if reason is not None and not self._stop_allowed(trainer):
            self.deferred_epochs.append(epoch)
            self._info(trainer, f"Stop due at epoch {epoch} ({reason}) deferred: min_epochs={trainer.fit_loop.min_epochs}, "
                       f"min_steps={trainer.fit_loop.min_steps} not reached; the rule is evaluated again at each check.")  # fmt: skip
            reason = None
        self._last_check_step = trainer.global_step
        should_stop = trainer.strategy.reduce_boolean_decision(reason is not None, all=False)
        trainer.should_stop = trainer.should_stop or should_stop
        if should_stop and reason is not None:
            self.stopped_epoch, self.stop_reason = epoch, reason
            self.stopping_reason = _REASONS.get(reason, EarlyStoppingReason.PATIENCE_EXHAUSTED)
            self.stopping_reason_message = self._message(reason)
            self._info(trainer, self.stopping_reason_message)
        self._log_diagnostics(trainer)

    def _replayed_logs(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        """``callback_metrics``, plus the monitored value from the checkpoint when Lightning replays an epoch end.

        A run resumed from a checkpoint written at the end of validation first runs that epoch's
        ``on_train_epoch_end`` without training or validating, so nothing is logged; the uninterrupted run checked
        the value validation logged, which is in this callback's state. None: skip the check.
        """
        logs = dict(trainer.callback_metrics)
        if self.monitor in logs or self._trained_since_start or trainer.ckpt_path is None:
            return logs
        snap = self._val_snapshot
        if snap is None or (snap.get("epoch"), snap.get("step")) != (trainer.current_epoch, trainer.global_step):
            return None  # the uninterrupted run had no value here either
        if self.train_monitor:
            rank_zero_warn(
                f"EarlyStopping: the check of epoch {trainer.current_epoch} is skipped after resuming: the checkpoint "
                f"was written at the end of validation, before `{self.train_monitor}` was aggregated. Save checkpoints "
                "at the end of the training epoch (ModelCheckpoint(save_on_train_epoch_end=True)) for exact PQ resumes."
            )
            return None
        logs[self.monitor] = torch.tensor(float(snap["value"]))
        return logs

    def _logged(self, logs: dict[str, Any]) -> bool:
        for name, role in ((self.monitor, "monitor"), (self.train_monitor, "train_monitor")):
            if name is None or name in logs:
                continue
            where = "training" if self._check_on_train_epoch_end else "validation"
            logged = ", ".join(f"`{k}`" for k in sorted(logs)) or "(nothing logged yet)"
            error = MissingMetricError(
                f"EarlyStopping: `{role}` is {name!r}, which is not logged at this check (epoch end of {where}). "
                f"Logged metrics: {logged}. Log it with self.log({name!r}, ...) or set `{role}` to one of these."
            )
            if self.strict:
                raise error
            if self.verbose:
                rank_zero_warn(str(error), category=RuntimeWarning)
            return False
        return True

    def _stop_allowed(self, trainer: pl.Trainer) -> bool:
        """Whether a stop signalled now ends training no earlier than ``min_epochs``/``min_steps`` allow."""
        min_epochs, min_steps = trainer.fit_loop.min_epochs or 0, trainer.fit_loop.min_steps or 0
        epoch_ok, step = trainer.current_epoch + 1 >= min_epochs, trainer.global_step
        if step >= min_steps:
            return epoch_ok  # min_epochs is reached at an epoch end, where there is a check to re-evaluate at
        # min_steps falls before the next check (as far as the last interval between checks tells): signalled now,
        # the stop lands on that step, as Lightning's does; deferred, it would land on the next check's step.
        return epoch_ok and step + max(1, step - self._last_check_step) > min_steps

    def _message(self, reason: str) -> str:
        sentence = (
            f"The loss became non-finite: {self._bad_loss} (the monitored {self.monitor} is still finite)."
            if reason == "loss_non_finite"
            else self.rule.message(reason)
        )
        return f"{sentence} Best {self.monitor} = {self.best_value:.5g} at epoch {self.best_epoch}. Signaling Trainer to stop."

    @staticmethod
    @override
    def _log_info(trainer: pl.Trainer, message: str, log_rank_zero_only: bool) -> None:
        rank = trainer.global_rank if trainer.world_size > 1 else None
        if rank is None or not log_rank_zero_only or rank == 0:
            log.info(rank_prefixed_message(message, rank))

    def _info(self, trainer: pl.Trainer, message: str) -> None:
        if self.verbose:
            self._log_info(trainer, message, self.log_rank_zero_only)

    def _log_diagnostics(self, trainer: pl.Trainer) -> None:
        pl_module = trainer.lightning_module
        if self.log_prefix is None or pl_module is None or trainer.state.fn != TrainerFn.FITTING:
            return  # outside a fit nothing is logged, so nothing is written
        metrics = {f"{self.log_prefix}{name}": value for name, value in self.rule.diagnostics().items()}
        if not self._check_on_train_epoch_end:
            for lg in trainer.loggers:  # self.log is not allowed in on_validation_end
                lg.log_metrics(metrics, step=trainer.global_step)
        elif trainer.loggers or not store_epoch_end_values(trainer, metrics, pl_module.device):
            # Without loggers, self.log's only trace is the value in callback_metrics: put it there (~0.5 ms less).
            for name, value in metrics.items():
                pl_module.log(name, value, on_step=False, on_epoch=True, sync_dist=False)

    # ------------------------------------------------------------------ state

    @override
    def state_dict(self) -> dict[str, Any]:
        return {  # Lightning's keys first, so its EarlyStopping can load this state too
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
            **self.rule.state_dict(),
            "check_epochs": list(self.check_epochs),
            "best_epoch": self.best_epoch,
            "stop_reason": self.stop_reason,
            "deferred_epochs": list(self.deferred_epochs),
            "val_snapshot": dict(self._val_snapshot) if self._val_snapshot is not None else None,
        }

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("callbacks") or {}
        if self.state_key in states:
            return
        legacy = legacy_state(states, type(self).__qualname__, self.monitor, self.mode, self.rule)
        if legacy is not None:
            self.load_state_dict(legacy)
        else:
            warn_if_state_missing(
                self, trainer, checkpoint, "patience and the best value start over at the resumed epoch."
            )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._stage not in (None, "fit"):
            return  # trainer.test/validate(ckpt_path=...) must not rewind the record of the fit that just ended
        self.rule.load_state_dict(state_dict)
        if "best_value" not in state_dict and state_dict.get("best_score") is not None:  # Lightning's state
            self.rule.best_value = _as_float(state_dict["best_score"])
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        self.stopping_reason = EarlyStoppingReason(
            state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED.value)
        )
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        self.check_epochs = [int(e) for e in state_dict.get("check_epochs", [])]
        self.best_epoch = state_dict.get("best_epoch")
        self.stop_reason = state_dict.get("stop_reason")
        self.deferred_epochs = [int(e) for e in state_dict.get("deferred_epochs", [])]
        snapshot = state_dict.get("val_snapshot")
        self._val_snapshot = dict(snapshot) if snapshot is not None else None
        if state_dict.get("best_weights") is not None and self.restorer is not None:  # a state written before 0.2
            self.restorer.load_state_dict({"best_value": self.best_value, "best_epoch": self.best_epoch,
                                           "best_weights": state_dict["best_weights"]})  # fmt: skip

    # ------------------------------------------------------------------ reporting

    def run_summary(self) -> dict[str, Any]:
        """What the train entry point writes under ``metrics.json["callbacks"][state_key]``.

        Example:
            >>> EarlyStopping("val/loss").run_summary()["stopped"]
            False
        """
        restorer = self.restorer
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
            "best_score": self.best_value if math.isfinite(self.best_value) else None,
            "wait_count": self.wait_count,
            "checks": len(self.history),
            "deferred_epochs": list(self.deferred_epochs),
            "last_gl": self.last_gl,
            "restore_best_weights": self.restore_best_weights,
            "restore_from": self.restore_from if self.restore_best_weights else None,
            "restored_epoch": restorer.restored_epoch if restorer is not None else None,
        }
