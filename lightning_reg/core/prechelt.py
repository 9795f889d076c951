"""Prechelt's early-stopping quantities as pure functions over recorded histories, and the comparisons they use.

Each function takes the monitored values recorded so far, one per validation check, oldest first, and
answers a question about the *last* check (Prechelt, "Early Stopping -- But When?", 1998), with ``E_va`` the
validation error, ``E_opt`` the lowest validation error so far and ``E_tr`` the training error:

- Generalization loss: ``GL(t) = 100 * (E_va(t) / E_opt(t) - 1)``; ``GL_alpha`` stops when ``GL > alpha``.
- Training progress over a strip of ``k`` checks:
  ``P_k(t) = 1000 * (sum(E_tr[t-k+1..t]) / (k * min(E_tr[t-k+1..t])) - 1)``.
- ``PQ_alpha`` stops at the end of a strip when ``GL(t) / P_k(t) > alpha``.
- ``UP_s`` stops at the end of a strip when the validation error rose in ``s`` successive strips:
  ``E_va(t - j*k) > E_va(t - (j+1)*k)`` for ``j = 0..s-1``.

Prechelt's errors are positive and lower is better (``mode="min"``). For ``mode="max"`` (e.g. accuracy)
"worse" means lower and the GL ratio is inverted, ``GL = 100 * (best / current - 1)``: the percentage by
which the best value exceeds the current one. Both forms are 0 at the best check and grow as the
monitored value degrades. Strips are counted from the first check: check ``i`` (0-based) ends a strip
when ``(i + 1) % k == 0``. The criterion objects over them are in :mod:`lightning_reg.core.stopping`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "best_so_far",
    "generalization_loss",
    "gl_history",
    "gl_stop",
    "is_improvement",
    "is_strip_end",
    "is_worse",
    "pq_stop",
    "progress_quotient",
    "training_progress",
    "up_count",
    "up_stop",
]


def is_improvement(current: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """True when ``current`` beats ``best`` by more than ``min_delta`` (NaN never improves).

    ``min_delta`` keeps its sign, as in Lightning's ``EarlyStopping``: a negative one lets a value up to
    ``|min_delta|`` worse than the best still count as an improvement (Keras takes ``abs(min_delta)``).

    Example:
        >>> is_improvement(0.5, 0.6, "min"), is_improvement(0.59, 0.6, "min", min_delta=0.02)
        (True, False)
        >>> is_improvement(0.605, 0.6, "min", min_delta=-0.01)
        True
    """
    if mode == "min":
        return current < best - min_delta
    return current > best + min_delta


def is_worse(current: float, reference: float, mode: str) -> bool:
    """True when ``current`` is strictly worse than ``reference`` (NaN compares False).

    Example:
        >>> is_worse(0.7, 0.6, "min"), is_worse(0.7, 0.6, "max")
        (True, False)
    """
    return current > reference if mode == "min" else current < reference


def best_so_far(values: Sequence[float], mode: str = "min") -> float:
    """The best finite value in ``values`` (``inf`` for min, ``-inf`` for max when there is none).

    Example:
        >>> best_so_far([0.5, 0.3, float("nan"), 0.4])
        0.3
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.inf if mode == "min" else -math.inf
    return min(finite) if mode == "min" else max(finite)


def generalization_loss(current: float, best: float, mode: str = "min") -> float:
    """Prechelt's ``GL`` in percent: how much worse ``current`` is than ``best``, as a ratio.

    ``100 * (current / best - 1)`` for ``mode="min"``, ``100 * (best / current - 1)`` for ``"max"``.
    Both need positive values; with a zero or negative denominator the result is 0 when ``current``
    equals ``best`` and ``inf`` otherwise. A NaN ``current`` gives NaN.

    Example:
        >>> round(generalization_loss(0.55, 0.50), 6)
        10.0
        >>> round(generalization_loss(0.90, 0.99, mode="max"), 6)
        10.0
    """
    if math.isnan(current) or math.isnan(best):
        return math.nan
    num, den = (current, best) if mode == "min" else (best, current)
    if den <= 0 or not math.isfinite(den):
        return 0.0 if current == best else math.inf
    return 100.0 * (num / den - 1.0)


def gl_history(values: Sequence[float], mode: str = "min") -> list[float]:
    """``GL(t)`` at every check, against the best value up to and including that check.

    Example:
        >>> [round(g, 6) for g in gl_history([1.0, 0.8, 0.88, 1.0])]
        [0.0, 0.0, 10.0, 25.0]
    """
    out = []
    for t in range(len(values)):
        out.append(generalization_loss(values[t], best_so_far(values[: t + 1], mode), mode))
    return out


def training_progress(train_values: Sequence[float], strip: int) -> float:
    """Prechelt's ``P_k`` (per mille) over the last ``strip`` training errors.

    It is large while training error still falls fast inside the strip and goes to 0 as training
    stalls. Returns NaN when fewer than ``strip`` values exist or one is NaN; ``inf`` when the strip's
    minimum is 0 and the sum is not.

    Example:
        >>> round(training_progress([1.0, 0.5, 0.4, 0.3], 3), 6)
        333.333333
    """
    if strip < 1 or len(train_values) < strip:
        return math.nan
    window = list(train_values[-strip:])
    if any(math.isnan(v) for v in window):
        return math.nan
    low = min(window)
    total = sum(window)
    if low <= 0:
        return 0.0 if total == strip * low else math.inf
    return 1000.0 * (total / (strip * low) - 1.0)


def is_strip_end(n_checks: int, strip: int) -> bool:
    """True when the ``n_checks``-th check (1-based count) closes a strip of ``strip`` checks.

    Example:
        >>> [is_strip_end(n, 3) for n in range(1, 7)]
        [False, False, True, False, False, True]
    """
    return n_checks > 0 and n_checks % strip == 0


def gl_stop(values: Sequence[float], alpha: float, mode: str = "min") -> bool:
    """``GL_alpha``: stop at the last check when ``GL > alpha``.

    Example:
        >>> gl_stop([1.0, 0.8, 0.88], alpha=5), gl_stop([1.0, 0.8, 0.82], alpha=5)
        (True, False)
    """
    if not values:
        return False
    gl = generalization_loss(values[-1], best_so_far(values, mode), mode)
    return gl > alpha


def progress_quotient(values: Sequence[float], train_values: Sequence[float], strip: int, mode: str = "min") -> float:
    """``PQ(t) = GL(t) / P_k(t)`` at the last check (NaN when undefined, ``inf`` when ``P_k`` is 0 and GL > 0).

    Example:
        >>> round(progress_quotient([1.0, 0.8, 0.88], [1.0, 0.98, 0.97], 3), 4)
        0.7275
    """
    if not values:
        return math.nan
    gl = generalization_loss(values[-1], best_so_far(values, mode), mode)
    pk = training_progress(train_values, strip)
    if math.isnan(gl) or math.isnan(pk):
        return math.nan
    if pk == 0:
        return 0.0 if gl == 0 else math.inf
    return gl / pk


def pq_stop(
    values: Sequence[float], train_values: Sequence[float], alpha: float, strip: int, mode: str = "min"
) -> bool:
    """``PQ_alpha``: stop at the end of a strip when ``GL / P_k > alpha``.

    Example:
        >>> pq_stop([1.0, 0.8, 0.88], [1.0, 0.98, 0.97], alpha=0.7, strip=3)
        True
        >>> pq_stop([1.0, 0.8, 0.88, 0.9], [1.0, 0.98, 0.97, 0.96], alpha=0.7, strip=3)  # not a strip end
        False
    """
    if not is_strip_end(len(values), strip):
        return False
    return progress_quotient(values, train_values, strip, mode) > alpha


def up_count(values: Sequence[float], strip: int, mode: str = "min") -> int:
    """How many successive strips, ending at the last check, the monitored value got worse in.

    Only meaningful at a strip end (returns 0 elsewhere). Strip ends are compared with the previous
    strip end; the first strip has no predecessor.

    Example:
        >>> up_count([5, 4, 3, 4, 5, 6], strip=2)  # strip ends: 4, 4, 6
        1
    """
    n = len(values)
    if not is_strip_end(n, strip):
        return 0
    count = 0
    i = n - 1
    while i - strip >= 0 and is_worse(values[i], values[i - strip], mode):
        count += 1
        i -= strip
    return count


def up_stop(values: Sequence[float], s: int, strip: int, mode: str = "min") -> bool:
    """``UP_s``: stop at the end of a strip when the value got worse in ``s`` successive strips.

    Example:
        >>> up_stop([3, 2, 3, 4], s=2, strip=1), up_stop([3, 2, 3, 4], s=3, strip=1)
        (True, False)
    """
    return up_count(values, strip, mode) >= s
