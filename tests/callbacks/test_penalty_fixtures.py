"""Checkpoints written before penalties became rule objects (tests/fixtures/penalties, commit af762c2) still resume.

Each fixture is a ``last.ckpt`` cut after ``K_EPOCHS`` epochs; resuming it with today's code to ``RESUME_TO``
epochs must give, bit for bit, the weights and callback states that the old code reached from the same
checkpoint (stored beside it) and those of an uninterrupted run of today's code.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "penalties"
sys.path.insert(0, str(FIXTURES))

from make_v0_2 import K_EPOCHS, RESUME_TO, callbacks  # noqa: E402

from reliability_registry import assert_same, fit  # noqa: E402


@pytest.mark.parametrize("name", ["weight_penalty", "max_norm"])
def test_a_checkpoint_written_before_the_rules_resumes_bit_exactly(name: str) -> None:
    ckpt = FIXTURES / f"v0_2_{name}.ckpt"
    old = torch.load(FIXTURES / f"v0_2_{name}_resumed.pt", weights_only=True)
    saved = torch.load(ckpt, weights_only=True)["callbacks"]
    assert [cb.state_key for cb in callbacks(name) if cb.state_key not in saved] == []
    with warnings.catch_warnings():
        # A state key that changed would leave the callback's state behind with this warning.
        warnings.filterwarnings("error", message=".*holds no state.*")
        resumed = fit(None, RESUME_TO, callbacks=callbacks(name), ckpt_path=ckpt)
    assert resumed.trainer.global_step > K_EPOCHS * 8
    assert_same(resumed.weights(), old["weights"], f"{name}: weights against the old code's resume")
    assert_same(resumed.states(), old["states"], f"{name}: callback states against the old code's resume")
    fresh = fit(None, RESUME_TO, callbacks=callbacks(name))
    assert_same(resumed.weights(), fresh.weights(), f"{name}: weights against an uninterrupted run")
    assert_same(resumed.states(), fresh.states(), f"{name}: callback states against an uninterrupted run")
