"""Early-stopping criteria as objects: their parameters, their state over the checks, their decision, their message.

:class:`Criterion` and its subclasses :class:`Patience`, :class:`GeneralizationLoss`, :class:`ProgressQuotient`
and :class:`WorseningStrips` are registered under their config names in :data:`CRITERIA`. Each holds its
validated parameters and its state (the recorded values, the best value, the wait count, whether the baseline
was beaten; ``state_dict``/``load_state_dict`` for resuming), decides on each new value and says why it
stopped. :class:`lightning_reg.EarlyStopping` is Lightning glue over one of them; a sweep pruner or a plain
loop can use them directly. Prechelt's quantities (``GL``, ``P_k``, ``PQ``, ``UP``) are pure functions in
:mod:`lightning_reg.core.prechelt`, re-exported here.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from typing_extensions import override

from lightning_reg.core.prechelt import (
    best_so_far,
    generalization_loss,
    gl_history,
    gl_stop,
    is_improvement,
    is_strip_end,
    is_worse,
    pq_stop,
    progress_quotient,
    training_progress,
    up_count,
    up_stop,
)
from lightning_reg.errors import ConfigError, check_bool, check_choice, check_int, check_range

__all__ = [
    "CRITERIA",
    "KNOWN_METRICS",
    "Criterion",
    "GeneralizationLoss",
    "Patience",
    "ProgressQuotient",
    "WorseningStrips",
    "best_so_far",
    "check_criterion_options",
    "check_mode_matches",
    "criterion_class",
    "generalization_loss",
    "gl_history",
    "gl_stop",
    "infer_mode",
    "is_improvement",
    "is_strip_end",
    "is_worse",
    "make_criterion",
    "metric_name",
    "named_direction",
    "pq_stop",
    "progress_quotient",
    "training_progress",
    "up_count",
    "up_stop",
]

#: Metrics whose direction is known, by the last component of a monitor's name (see :func:`metric_name`).
KNOWN_METRICS: Mapping[str, str] = {
    **dict.fromkeys(
        ("loss", "nll", "error", "err", "mse", "mae", "rmse", "mape", "msle", "perplexity", "ppl", "cer", "wer"),
        "min",
    ),
    **dict.fromkeys(
        (
            "acc", "accuracy", "top1_acc", "top5_acc", "auc", "auroc", "roc_auc", "ap",
            "average_precision", "f1", "f1_score", "fbeta", "precision", "recall", "r2", "r2_score", "iou", "miou",
            "mean_iou", "jaccard", "dice", "map", "map50", "map_50", "psnr", "ssim", "bleu",
        ),
        "max",
    ),
}  # fmt: skip
_SPLIT_PREFIX = re.compile(r"^(?:val|valid|validation|train|training|test|eval)[_-]")
_SPLIT_SUFFIX = re.compile(r"[_-](?:epoch|step)$")


def metric_name(monitor: str) -> str:
    """The metric a monitor names: its last ``/`` or ``.`` component, lower case, without a stage prefix
    (``val_``, ``train_``, ``test_`` ...) or Lightning's ``_epoch``/``_step`` suffix.

    Example:
        >>> metric_name("val/acc"), metric_name("test_val_loss"), metric_name("val_r2_score"), metric_name("val/1-acc")
        ('acc', 'loss', 'r2_score', '1-acc')
        >>> metric_name("train_loss_epoch")
        'loss'
    """
    name = re.split(r"[/.]", str(monitor).lower())[-1]
    name = _SPLIT_SUFFIX.sub("", name)
    while _SPLIT_PREFIX.match(name):
        name = _SPLIT_PREFIX.sub("", name, count=1)
    return name


def named_direction(monitor: str) -> str | None:
    """``"max"`` or ``"min"`` when the monitor names a known metric (:data:`KNOWN_METRICS`), else None.

    Only the whole metric name counts, never a piece of it: ``val/1-acc`` (an error rate) is not known.

    Example:
        >>> named_direction("val/acc"), named_direction("val_loss"), named_direction("val/1-acc")
        ('max', 'min', None)
    """
    return KNOWN_METRICS.get(metric_name(monitor))


def check_mode_matches(monitor: str | None, mode: str, option: str = "mode") -> None:
    """Refuse a ``mode`` that contradicts a known metric's direction (``mode="max"`` on ``val/loss``).

    Example:
        >>> check_mode_matches("val/loss", "min"), check_mode_matches("val/1-acc", "min")
        (None, None)
    """
    if not monitor or mode == "auto":
        return
    named = named_direction(monitor)
    if named is not None and mode != named:
        raise ConfigError(
            f"`{option}` must be {named!r} for monitor {monitor!r} ({metric_name(monitor)!r} is a known metric: "
            f"{'higher' if named == 'max' else 'lower'} is better); got {mode!r}. Use mode=auto, or log it under "
            "another name if it really goes the other way."
        )


def infer_mode(monitor: str) -> str:
    """``mode="auto"``: the known metric's direction, else ``"min"`` (Lightning's default).

    Example:
        >>> infer_mode("val/acc"), infer_mode("val_f1"), infer_mode("val/loss"), infer_mode("abc")
        ('max', 'max', 'min', 'min')
    """
    return named_direction(monitor) or "min"


# ---------------------------------------------------------------------------------------------- criterion objects

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


class Patience(Criterion):
    """Stop when ``patience`` checks pass without an improvement (Lightning's and Keras' rule).

    With a ``baseline`` never beaten, the same count stops with reason ``"baseline"`` instead.

    Example:
        A loop over validation losses, outside any Trainer:

        >>> rule = Patience(patience=3, min_delta=0.01, monitor="val/loss")
        >>> for epoch, loss in enumerate([1.0, 0.8, 0.7, 0.695, 0.72, 0.71, 0.9]):
        ...     if rule.update(loss):
        ...         break
        >>> epoch, rule.reason, rule.message()
        (5, 'patience', 'val/loss did not improve in the last 3 checks.')
    """

    name = "patience"
    options = ("patience",)

    def __init__(self, patience: int = 3, **shared: Any) -> None:
        super().__init__(patience=patience, **shared)

    @override
    def fires(self) -> bool:
        return self.patience_over and self.baseline_beaten

    @override
    def _message(self) -> str:
        return f"{self.monitor} did not improve in the last {self.wait_count} checks."


def _required_alpha(alpha: Any, criterion: str) -> float:
    if alpha is None:
        raise ConfigError(f"`alpha` must be a number > 0 for criterion {criterion!r}; got None.")
    return check_range("alpha", alpha, 0.0, None, low_inclusive=False)


def _required_s(s: Any, criterion: str) -> int:
    if s is None:
        raise ConfigError(
            f"`s` (successive worsening strips) must be an integer >= 1 for criterion {criterion!r}; got None."
        )
    return check_int("s", s, low=1)


class GeneralizationLoss(Criterion):
    """Prechelt's ``GL_alpha``: stop when the generalization loss ``GL`` exceeds ``alpha`` percent.

    The monitored values must be positive (an error or a loss); a value <= 0 is a :class:`ConfigError`.

    Example:
        >>> rule = GeneralizationLoss(alpha=5.0, monitor="val/loss")
        >>> [rule.update(v) for v in [1.0, 0.8, 0.7, 0.72, 0.74]]
        [None, None, None, None, 'GL']
        >>> rule.message()
        'Generalization loss GL = 5.714 > alpha = 5.0.'
        >>> GeneralizationLoss(alpha=None)
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `alpha` must be a number > 0 for criterion 'GL'; got None.
    """

    name = "GL"
    options = ("alpha",)
    needs_positive = True

    def __init__(self, alpha: float, **shared: Any) -> None:
        self.alpha = _required_alpha(alpha, self.name)
        super().__init__(**shared)

    @override
    def fires(self) -> bool:
        return gl_stop(self.history, self.alpha, self.mode)

    @override
    def _message(self) -> str:
        return f"Generalization loss GL = {self.last_gl:.4g} > alpha = {self.alpha}."


class ProgressQuotient(Criterion):
    """Prechelt's ``PQ_alpha``: at the end of each strip of ``strip`` checks, stop when ``GL / P_k > alpha``.

    Needs the training loss at every check (``update(value, train_value)``); the monitored values must be
    positive.

    Example:
        >>> rule = ProgressQuotient(alpha=0.5, strip=3)
        >>> val = [1.0, 0.8, 0.7, 0.72, 0.71, 0.73, 0.75, 0.77, 0.8]
        >>> train = [1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.64, 0.635, 0.63]
        >>> [rule.update(v, t) for v, t in zip(val, train)][-1], rule.message()
        ('PQ', 'Quotient GL/P_3 = 1.8 > alpha = 0.5 at the end of a strip.')
    """

    name = "PQ"
    options = ("alpha", "strip")
    needs_train = True
    needs_positive = True

    def __init__(self, alpha: float, strip: int = 5, **shared: Any) -> None:
        self.alpha = _required_alpha(alpha, self.name)
        self.strip = check_int("strip", strip, low=1)
        super().__init__(**shared)

    @override
    def fires(self) -> bool:
        return pq_stop(self.history, self.train_history, self.alpha, self.strip, self.mode)

    @override
    def _message(self) -> str:
        pq = progress_quotient(self.history, self.train_history, self.strip, self.mode)
        return f"Quotient GL/P_{self.strip} = {pq:.4g} > alpha = {self.alpha} at the end of a strip."

    @override
    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        pk = training_progress(self.train_history, self.strip)
        if math.isfinite(pk):
            out["pk"] = pk
        return out


class WorseningStrips(Criterion):
    """Prechelt's ``UP_s``: stop at the end of a strip when the value got worse in ``s`` successive strips.

    Example:
        >>> rule = WorseningStrips(s=2, strip=2)
        >>> reasons = [rule.update(v) for v in [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.78, 0.8, 0.85, 0.9]]
        >>> reasons.index("UP"), rule.diagnostics()
        (9, {'wait': 5.0, 'gl': 28.57142857142858, 'up': 2.0})
    """

    name = "UP"
    options = ("s", "strip")

    def __init__(self, s: int, strip: int = 5, **shared: Any) -> None:
        self.strip = check_int("strip", strip, low=1)
        self.s = _required_s(s, self.name)
        super().__init__(**shared)

    @override
    def fires(self) -> bool:
        return up_stop(self.history, self.s, self.strip, self.mode)

    @override
    def _message(self) -> str:
        return f"{self.monitor} got worse in {self.s} successive strips of {self.strip} checks."

    @override
    def diagnostics(self) -> dict[str, float]:
        out = super().diagnostics()
        out["up"] = float(up_count(self.history, self.strip, self.mode))
        return out


#: The criteria by config name (``EarlyStopping(criterion=...)``, case-insensitive); a subclass with a ``name``
#: joins it when it is defined.
CRITERIA: Mapping[str, type[Criterion]] = _REGISTRY


def criterion_class(name: Any) -> type[Criterion]:
    """The criterion class registered under ``name`` (case-insensitive).

    Example:
        >>> criterion_class("gl").__name__
        'GeneralizationLoss'
        >>> criterion_class("slope")
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `criterion` must be one of 'patience', 'GL', 'PQ', 'UP'; got 'slope'.
    """
    canonical = {c.lower(): c for c in CRITERIA}
    if not isinstance(name, str) or name.lower() not in canonical:
        raise ConfigError(f"`criterion` must be one of {', '.join(map(repr, CRITERIA))}; got {name!r}.")
    return CRITERIA[canonical[name.lower()]]


def check_criterion_options(
    cls: type[Criterion], *, alpha: Any = None, strip: Any = 5, s: Any = None
) -> tuple[float | None, int, int | None]:
    """Check ``alpha``, ``strip`` and ``s`` for criterion ``cls``: required where it uses them, valid wherever given.

    Returns them normalized (``alpha`` as a float). The messages name the option, the allowed values and the
    value given.

    Example:
        >>> check_criterion_options(GeneralizationLoss, alpha=5)
        (5.0, 5, None)
        >>> check_criterion_options(WorseningStrips, strip=2)
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `s` (successive worsening strips) must be an integer >= 1 for criterion 'UP'; got None.
    """
    checked_alpha: float | None = None
    if "alpha" in cls.options:
        checked_alpha = _required_alpha(alpha, cls.name)
    elif alpha is not None:
        checked_alpha = check_range("alpha", alpha, 0.0, None, low_inclusive=False)
    checked_strip = check_int("strip", strip, low=1)
    checked_s: int | None = None
    if "s" in cls.options:
        checked_s = _required_s(s, cls.name)
    elif s is not None:
        checked_s = check_int("s", s, low=1)
    return checked_alpha, checked_strip, checked_s


def make_criterion(name: Any, *, alpha: Any = None, strip: Any = 5, s: Any = None, **shared: Any) -> Criterion:
    """The criterion ``name`` built from ``EarlyStopping``'s flat options (those it does not use are checked, then ignored).

    ``shared`` are the options every criterion takes (:meth:`Criterion.configure`).

    Example:
        >>> make_criterion("up", s=2, strip=3, alpha=1.0)
        WorseningStrips(s=2, strip=3, mode='min', min_delta=0.0, baseline=None)
    """
    cls = criterion_class(name)
    checked_alpha, checked_strip, checked_s = check_criterion_options(cls, alpha=alpha, strip=strip, s=s)
    given = {"alpha": checked_alpha, "strip": checked_strip, "s": checked_s}
    own = {k: v for k, v in given.items() if k in cls.options}
    return cls(**own, **shared)
