"""The early-stopping criterion as an object (:class:`Criterion`), and the registry of criteria by config name.

A subclass with a ``name`` joins :data:`CRITERIA` when it is defined. The criteria themselves
(:class:`~lightning_reg.core.stopping.Patience` and Prechelt's three) and the look-up by name are in
:mod:`lightning_reg.core.stopping`, the public home, which imports this module.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from lightning_reg.core.prechelt import best_so_far, generalization_loss, is_improvement, is_worse
from lightning_reg.errors import ConfigError, check_bool, check_choice, check_int, check_range

__all__ = ["CRITERIA", "SHARED_REASONS", "Criterion"]


_REGISTRY: dict[str, type[Criterion]] = {}

#: The reasons the rules shared by every criterion give (Lightning's ``EarlyStopping`` rules, and the baseline).
SHARED_REASONS = ("non_finite", "stopping_threshold", "divergence_threshold", "baseline")


class Criterion(abc.ABC):
    """One early-stopping criterion: its parameters, its state over the checks so far, its decision, its message.

    Feed it one monitored value per check with :meth:`update`; it answers the reason to stop at that check or
    None. The rules every criterion shares come first, in Lightning's order: a non-finite value
    (``check_finite``), ``stopping_threshold``, ``divergence_threshold``; then the criterion's own rule
    (:meth:`fires`, reason :attr:`name`) and the baseline rule (reason ``"baseline"``).

    Every criterion tracks the best value (an improvement must beat it by more than ``min_delta``, which keeps
    its sign as in Lightning) and a wait count, as Keras counts it: every check adds one, and an improvement
    that also beats ``baseline`` resets it to 0. The patience and baseline rules fire on a check that did not
    improve once the wait reaches ``patience``: reason ``"patience"`` when the baseline was beaten (or there is
    none), ``"baseline"`` when it never was. So, as in Keras, an improving check never stops training, even
    below the baseline. ``baseline_deadline=True`` keeps our earlier rule instead: the baseline must be beaten
    within ``patience`` checks, and an improving check below it stops too.

    A check with ``counted=False`` (a warm-up epoch) is neither recorded nor counted; only a non-finite value
    stops there.

    Subclasses register themselves under :attr:`name` (:data:`CRITERIA`); :func:`make_criterion` builds one from
    a name. A new criterion is one subclass with a ``name``, its ``options``, :meth:`fires` and :meth:`_message`.

    Args:
        patience: Checks without improvement before the patience (and baseline) rule fires (>= 0).
        mode: ``"min"`` (lower is better) or ``"max"``.
        min_delta: An improvement must beat the best value by more than this (negative: by more than minus this).
        baseline: The value an improvement must beat to reset the wait (Keras' ``baseline``).
        baseline_deadline: Stop as soon as ``patience`` checks pass without beating ``baseline``, improving or not.
        stopping_threshold: Stop once a value is better than this.
        divergence_threshold: Stop once a value is worse than this.
        check_finite: Stop at a NaN or infinite value.
        monitor: The monitored value's name, in messages and errors.

    Example:
        >>> from lightning_reg.core.stopping import Patience
        >>> rule = Patience(patience=2)
        >>> [rule.update(v) for v in [1.0, 0.8, 0.9, 0.85]]
        [None, None, None, 'patience']
        >>> rule.message(), rule.best_value, rule.wait_count
        ('value did not improve in the last 2 checks.', 0.8, 2)
    """

    #: The config name (``EarlyStopping(criterion=...)``) and the reason this criterion's rule gives.
    name: ClassVar[str] = ""
    #: Its own parameters, in the order they appear in ``EarlyStopping.state_key``.
    options: ClassVar[tuple[str, ...]] = ()
    #: Whether :meth:`update` needs the training value too (``train_value``).
    needs_train: ClassVar[bool] = False
    #: Whether the monitored values must be positive (Prechelt's errors; GL's ratio needs them).
    needs_positive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, **shared: Any) -> None:
        self.configure(**shared)

    def configure(
        self,
        *,
        patience: int = 3,
        mode: str = "min",
        min_delta: float = 0.0,
        baseline: float | None = None,
        baseline_deadline: bool = False,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_finite: bool = True,
        monitor: str = "value",
    ) -> None:
        """Check and set the options every criterion shares, and forget every check."""
        self.patience = check_int("patience", patience, low=0)
        self.mode: str = check_choice("mode", mode, ("min", "max"))
        self.min_delta = check_range("min_delta", min_delta)
        self.baseline = None if baseline is None else check_range("baseline", baseline)
        self.baseline_deadline = check_bool("baseline_deadline", baseline_deadline)
        self.stopping_threshold = (
            None if stopping_threshold is None else check_range("stopping_threshold", stopping_threshold)
        )
        self.divergence_threshold = (
            None if divergence_threshold is None else check_range("divergence_threshold", divergence_threshold)
        )
        self.check_finite = check_bool("check_finite", check_finite)
        self.monitor = monitor
        self.reset()

    def reset(self) -> None:
        """Forget every check (a fresh run)."""
        self.history: list[float] = []
        self.train_history: list[float] = []
        self.best_value: float = math.inf if self.mode == "min" else -math.inf
        self.wait_count = 0
        self.baseline_beaten = self.baseline is None
        #: Whether the last check improved on the best value.
        self.improved = False
        #: ``GL`` at the last check, when the values are finite and positive (else None).
        self.last_gl: float | None = None
        #: The reason :meth:`update` gave at the last check.
        self.reason: str | None = None
        self._last_value: float | None = None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in (*self.options, "mode", "min_delta", "baseline"))
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        """Same class, options and state (so a pickled copy of a callback compares equal to the callback)."""
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = object.__hash__

    # -- the decision

    @property
    def patience_over(self) -> bool:
        """Whether the last check did not improve and ``patience`` checks passed since the wait was last reset."""
        return not self.improved and self.wait_count > 0 and self.wait_count >= self.patience

    def update(self, value: float, train_value: float | None = None, *, counted: bool = True) -> str | None:
        """Record the check's ``value`` (and ``train_value``); the reason to stop at it, or None."""
        value = float(value)
        self._last_value = value
        non_finite = self.check_finite and not math.isfinite(value)
        if not counted:
            self.reason = "non_finite" if non_finite else None
            return self.reason
        self.history.append(value)
        if train_value is not None:
            self.train_history.append(float(train_value))
        improved = is_improvement(value, self.best_value, self.mode, self.min_delta)
        beats_baseline = self.baseline is None or is_improvement(value, self.baseline, self.mode, self.min_delta)
        if improved:
            self.best_value = value
        if beats_baseline and math.isfinite(value):
            self.baseline_beaten = True
        self.wait_count = 0 if improved and beats_baseline else self.wait_count + 1
        self.improved = improved
        self.last_gl = self._generalization_loss(value)
        self.reason = "non_finite" if non_finite else self._decide(value)
        return self.reason

    def _decide(self, value: float) -> str | None:
        if self.stopping_threshold is not None and is_improvement(value, self.stopping_threshold, self.mode):
            return "stopping_threshold"
        if self.divergence_threshold is not None and is_worse(value, self.divergence_threshold, self.mode):
            return "divergence_threshold"
        if self.fires():
            return self.name
        over = self.wait_count > 0 and self.wait_count >= self.patience
        if not self.baseline_beaten and over and (self.baseline_deadline or not self.improved):
            return "baseline"
        return None

    @abc.abstractmethod
    def fires(self) -> bool:
        """Whether this criterion's own rule says stop at the last check (the shared rules apart)."""

    def _generalization_loss(self, current: float) -> float | None:
        if not math.isfinite(current):
            return None
        best = best_so_far(self.history, self.mode)
        if self.needs_positive and (current <= 0 or best <= 0):
            raise ConfigError(
                f"EarlyStopping(criterion={self.name!r}) needs a positive monitored value (an error or loss, "
                f"Prechelt's E_va); got {self.monitor} = {current} (best {best}). Monitor a loss or error rate, or "
                "use criterion 'patience' or 'UP'."
            )
        if current <= 0 or best <= 0:
            return None
        return generalization_loss(current, best, self.mode)

    # -- reporting

    def message(self, reason: str | None = None) -> str:
        """Why ``reason`` (default: the last check's) stops training, in one sentence."""
        reason = self.reason if reason is None else reason
        value = math.nan if self._last_value is None else self._last_value
        if reason == "non_finite":
            return f"Monitored metric {self.monitor} = {value} is not finite."
        if reason == "stopping_threshold":
            return f"Stopping threshold reached: {self.monitor} = {value:.5g} beats {self.stopping_threshold}."
        if reason == "divergence_threshold":
            return (
                f"Divergence threshold reached: {self.monitor} = {value:.5g} is worse than {self.divergence_threshold}."
            )
        if reason == "baseline":
            return f"{self.monitor} did not beat baseline {self.baseline} within {self.wait_count} checks."
        return self._message()

    @abc.abstractmethod
    def _message(self) -> str:
        """The sentence for this criterion's own reason."""

    def diagnostics(self) -> dict[str, float]:
        """What to log at each check: ``wait``, ``gl`` (when defined) and the criterion's own (``pk``, ``up``)."""
        out = {"wait": float(self.wait_count)}
        if self.last_gl is not None:
            out["gl"] = float(self.last_gl)
        return out

    def key_params(self) -> dict[str, Any]:
        """This criterion's own parameters (:attr:`options`), as ``EarlyStopping.state_key`` names them."""
        return {k: getattr(self, k) for k in self.options}

    # -- state

    def state_dict(self) -> dict[str, Any]:
        """The state a resumed run needs: plain numbers and lists (loadable with ``weights_only=True``)."""
        return {
            "history": [float(v) for v in self.history],
            "train_history": [float(v) for v in self.train_history],
            "best_value": float(self.best_value),
            "wait_count": int(self.wait_count),
            "baseline_beaten": bool(self.baseline_beaten),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; missing keys (an older state) keep their defaults."""
        self.history = [float(v) for v in state.get("history", [])]
        self.train_history = [float(v) for v in state.get("train_history", [])]
        self.best_value = float(state.get("best_value", self.best_value))
        self.wait_count = int(state.get("wait_count", 0))
        self.baseline_beaten = bool(state.get("baseline_beaten", self.baseline is None))


#: The criteria by config name (``EarlyStopping(criterion=...)``, case-insensitive); a subclass with a ``name``
#: joins it when it is defined.
CRITERIA: Mapping[str, type[Criterion]] = _REGISTRY
