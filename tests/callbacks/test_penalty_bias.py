"""bias=: the biases of the selected kernels' modules get their own coefficients (Keras' bias_regularizer), in
WeightPenalty and PenaltyLossMixin alike."""

from __future__ import annotations

import torch
from test_penalties_callback import Tiny, fit, make, max_diff

from lightning_reg import PenaltyLossMixin, WeightPenalty


class BiasInLoss(Tiny):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)  # Tiny adds l2·Σw² on both kernels
        return loss + 1e-2 * sum(self.net[i].bias.pow(2).sum() for i in (0, 2))


class Mixed(PenaltyLossMixin, Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.configure_penalty(l2=1e-3, bias={"l2": 1e-2})

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y) + self.penalty_loss()


def test_weight_penalty_bias_trains_as_the_bias_penalty_in_the_loss_and_as_the_mixin() -> None:
    penalty = WeightPenalty(l2=1e-3, bias={"l2": 1e-2})
    ours, ref, mixed, no_bias = make(), make(BiasInLoss, l2=1e-3), make(Mixed), make()
    fit(ours, penalty)
    fit(ref)
    fit(mixed)
    fit(no_bias, WeightPenalty(l2=1e-3))
    assert max_diff(ours, ref) < 1e-6 and max_diff(ours, mixed) < 1e-6
    assert max_diff(ours, no_bias) > 1e-5, "the biases' penalty changed training"
    assert penalty.run_summary()["penalized_tensors"] == 4
    assert penalty.state_key.endswith("'bias': {'l2': 0.01}}")
