"""ActivityRegularization on real Trainers: it trains as Keras' activity penalty written into the loss would,
with accumulation too, and leaves evaluation alone."""

from __future__ import annotations

import pytest
import torch
from test_penalties_callback import Tiny, fit, make, max_diff
from torch import nn

from lightning_reg import ActivityRegularization
from lightning_reg.core.activity import activity_penalty
from lightning_reg.errors import ConfigError


class InLoss(Tiny):
    """The same penalty in the loss: (l1·Σ|a| + l2·Σa²) / batch on the ReLU output."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kw) -> None:
        super().__init__(**kw)
        self.act_l1, self.act_l2 = l1, l2

    def training_step(self, batch, batch_idx):
        x, y = batch
        hidden = self.net[1](self.net[0](x))
        loss = nn.functional.cross_entropy(self.net[2](hidden), y)
        return loss + activity_penalty(hidden, self.act_l1, self.act_l2)


@pytest.mark.parametrize("l1, l2, accumulate", [(1e-3, 0.0, 1), (0.0, 1e-2, 1), (1e-3, 1e-2, 2)])
def test_it_trains_as_the_penalty_in_the_loss(l1: float, l2: float, accumulate: int) -> None:
    cb = ActivityRegularization(l1=l1, l2=l2, modules=["ReLU"], log_every_n_steps=1)
    ours, ref, bare = make(opt="momentum"), make(InLoss, l1=l1, l2=l2, opt="momentum"), make(opt="momentum")
    fit(ours, cb, accumulate_grad_batches=accumulate)
    fit(ref, accumulate_grad_batches=accumulate)
    fit(bare, accumulate_grad_batches=accumulate)
    assert max_diff(ours, ref) < 1e-6
    assert max_diff(ours, bare) > 1e-4, "the penalty changed training"
    assert cb.run_summary()["modules"] == ["net.1"] and cb.run_summary()["batches"] == 8


def test_evaluation_and_no_grad_passes_are_left_alone() -> None:
    cb = ActivityRegularization(l2=1.0, modules=["net.1"])
    model = make()
    cb._handles = [model.net[1].register_forward_hook(cb._forward_hook)]
    x = torch.randn(4, 16)
    model.eval()
    model(x).sum().backward()
    eval_grad = model.net[0].weight.grad.clone()
    model.zero_grad()
    model.train()
    with torch.no_grad():
        model(x)
    assert cb._value is None
    model(x).sum().backward()
    assert cb._value is not None and not torch.equal(model.net[0].weight.grad, eval_grad)


def test_a_selection_that_matches_nothing_names_the_modules() -> None:
    with pytest.raises(ConfigError, match=r"`modules` \(\['Conv2d'\]\) matches no submodule of Tiny.*net.0 \(Linear\)"):
        fit(make(), ActivityRegularization(l2=1.0, modules=["Conv2d"]))
