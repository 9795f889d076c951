"""Prechelt's criteria as pure functions, checked against sequences computed by hand."""

from __future__ import annotations

import math

import pytest

from lightning_reg.core.stopping import (
    best_so_far,
    generalization_loss,
    gl_history,
    gl_stop,
    infer_mode,
    is_improvement,
    is_strip_end,
    pq_stop,
    progress_quotient,
    training_progress,
    up_count,
    up_stop,
)

NAN = float("nan")


def first_stop(rule, n: int) -> int | None:
    """Index of the first check at which ``rule(prefix_length)`` says stop."""
    return next((t for t in range(1, n + 1) if rule(t)), None)


def test_generalization_loss_by_hand():
    # E_opt = 0.5: 0.55 is 10 % worse, 0.75 is 50 % worse.
    assert generalization_loss(0.55, 0.5) == pytest.approx(10.0)
    assert generalization_loss(0.75, 0.5) == pytest.approx(50.0)
    assert generalization_loss(0.5, 0.5) == 0.0
    # max mode: best accuracy 0.99, now 0.90 -> the best is 10 % higher.
    assert generalization_loss(0.90, 0.99, "max") == pytest.approx(10.0)
    assert math.isnan(generalization_loss(NAN, 0.5))
    assert generalization_loss(0.1, 0.0) == math.inf and generalization_loss(0.0, 0.0) == 0.0


def test_gl_history_uses_running_best():
    values = [1.0, 0.8, 0.88, 0.7, 0.77, 1.4]
    # bests: 1, .8, .8, .7, .7, .7 -> GL 0, 0, 10, 0, 10, 100
    assert gl_history(values) == pytest.approx([0, 0, 10, 0, 10, 100])


def test_gl_stop_sequence():
    values = [1.0, 0.8, 0.7, 0.72, 0.74, 0.76]
    # GL at t=3: 2.857, t=4: 5.714, t=5: 8.571
    assert first_stop(lambda t: gl_stop(values[:t], alpha=5), len(values)) == 5  # prefix length 5 = epoch 4
    assert first_stop(lambda t: gl_stop(values[:t], alpha=8), len(values)) == 6
    assert first_stop(lambda t: gl_stop(values[:t], alpha=9), len(values)) is None
    assert not gl_stop([], alpha=1)
    assert not gl_stop([1.0, NAN], alpha=1), "NaN is handled by check_finite, not by GL"


def test_training_progress_by_hand():
    # strip [0.75, 0.70, 0.65]: sum 2.1, k*min 1.95 -> 1000*(2.1/1.95-1) = 76.923
    assert training_progress([1.0, 0.75, 0.70, 0.65], 3) == pytest.approx(1000 * (2.1 / 1.95 - 1))
    assert training_progress([0.5, 0.5, 0.5], 3) == 0.0
    assert math.isnan(training_progress([0.5, 0.4], 3))
    assert math.isnan(training_progress([0.5, NAN, 0.4], 3))
    assert training_progress([0.0, 0.0], 2) == 0.0 and training_progress([0.1, 0.0], 2) == math.inf


def test_progress_quotient_and_pq_stop_by_hand():
    val = [1.0, 0.8, 0.7, 0.72, 0.71, 0.73, 0.75, 0.77, 0.8]
    train = [1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.64, 0.635, 0.63]
    # t=6 (strip end): GL = 100*(0.73/0.7-1) = 4.2857, P_3 = 76.923 -> PQ = 0.05571
    assert progress_quotient(val[:6], train[:6], 3) == pytest.approx(
        (100 * (0.73 / 0.7 - 1)) / (1000 * (2.1 / 1.95 - 1))
    )
    # t=9: GL = 14.2857, P_3 = 1000*(1.905/1.89-1) = 7.9365 -> PQ = 1.8
    assert progress_quotient(val, train, 3) == pytest.approx((100 * (0.8 / 0.7 - 1)) / (1000 * (1.905 / 1.89 - 1)))
    assert first_stop(lambda t: pq_stop(val[:t], train[:t], alpha=0.5, strip=3), len(val)) == 9
    assert first_stop(lambda t: pq_stop(val[:t], train[:t], alpha=0.05, strip=3), len(val)) == 6
    # Not at a strip end: never stops, however large PQ is.
    assert not pq_stop(val[:8], train[:8], alpha=1e-9, strip=3)
    # Training stalled (P_k = 0) while validation got worse: PQ is infinite.
    assert progress_quotient([1.0, 1.1], [0.5, 0.5], 2) == math.inf
    assert progress_quotient([1.0, 1.0], [0.5, 0.5], 2) == 0.0


def test_up_counts_successive_worse_strips():
    values = [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.78, 0.8, 0.85, 0.9]
    # strip ends (k=2): t=2 0.9, t=4 0.85, t=6 0.75, t=8 0.8, t=10 0.9
    assert [up_count(values[:t], 2) for t in range(1, 11)] == [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    assert first_stop(lambda t: up_stop(values[:t], s=1, strip=2), 10) == 8
    assert first_stop(lambda t: up_stop(values[:t], s=2, strip=2), 10) == 10
    assert first_stop(lambda t: up_stop(values[:t], s=3, strip=2), 10) is None
    # max mode: worse means lower
    acc = [0.5, 0.6, 0.55, 0.5]
    assert [up_count(acc[:t], 1, "max") for t in range(1, 5)] == [0, 0, 1, 2]


def test_up_with_strip_one_is_consecutive_increases():
    assert first_stop(lambda t: up_stop([3, 2, 3, 4, 5][:t], s=3, strip=1), 5) == 5


def test_helpers():
    assert [is_strip_end(n, 2) for n in range(0, 5)] == [False, False, True, False, True]
    assert best_so_far([NAN, 0.4, 0.2, NAN]) == 0.2 and best_so_far([NAN], "max") == -math.inf
    assert is_improvement(0.49, 0.5, "min") and not is_improvement(0.5, 0.5, "min")
    assert not is_improvement(NAN, 0.5, "min") and not is_improvement(NAN, 0.5, "max")
    assert is_improvement(0.52, 0.5, "max", min_delta=0.01) and not is_improvement(0.51, 0.5, "max", min_delta=0.01)
    assert infer_mode("val/ACC") == "max" and infer_mode("val/top1") == "min"
