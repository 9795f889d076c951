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

import math
from typing import Any

from typing_extensions import override

from lightning_reg.core.criterion import CRITERIA, Criterion
from lightning_reg.core.metric_direction import (
    KNOWN_METRICS,
    check_mode_matches,
    infer_mode,
    metric_name,
    named_direction,
)
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
from lightning_reg.errors import ConfigError, check_int, check_range

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
