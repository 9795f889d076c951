"""AugMix's JSD term against timm's ``JsdCrossEntropy`` (the reference): the same gradient on the same model.

Ours leaves the module's loss as it is (cross-entropy over every view) and works on the gradient side; timm's is a
loss function (cross-entropy on the clean split + alpha x JSD). Both must move the weights the same way.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

timm_loss = pytest.importorskip("timm.loss", reason='timm is not installed (pip install -e ".[parity]")')

from lightning_reg.core.augment.jsd import JSDConsistency, jsd_consistency  # noqa: E402


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5))


def _grads(net: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_gradient_equals_timms_jsd_cross_entropy(accumulate: int) -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(3 * 8, 12, generator=gen), torch.randint(0, 5, (8,), generator=gen).repeat(3)

    ours = _net()
    jsd = JSDConsistency(num_splits=3, alpha=12.0, scale=1.0 / accumulate)
    jsd.attach(ours)
    (
        F.cross_entropy(ours(x), y) / accumulate
    ).backward()  # the module's own loss, over all views, as Lightning scales it

    theirs = _net()
    loss = timm_loss.JsdCrossEntropy(num_splits=3, alpha=12, smoothing=0.0)
    (loss(theirs(x), y) / accumulate).backward()

    for a, b in zip(_grads(ours), _grads(theirs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    jsd.detach()
    assert not ours._forward_hooks


def test_the_term_is_timms_jsd() -> None:
    logits = torch.randn(3 * 6, 4, generator=torch.Generator().manual_seed(2))
    y = torch.zeros(18, dtype=torch.long)
    full = timm_loss.JsdCrossEntropy(num_splits=3, alpha=1.0, smoothing=0.0)(logits, y)
    torch.testing.assert_close(jsd_consistency(logits, 3), full - F.cross_entropy(logits[:6], y[:6]))
