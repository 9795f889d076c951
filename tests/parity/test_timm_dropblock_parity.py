"""DropBlock against timm's ``DropBlock2d`` (the reference): the same mask on the same seed, the same output."""

from __future__ import annotations

import pytest
import torch

timm_drop = pytest.importorskip("timm.layers.drop", reason='timm is not installed (pip install -e ".[parity]")')

from lightning_reg.core.noise import DropBlock2d, dropblock_gamma  # noqa: E402


@pytest.mark.parametrize(
    ("shape", "drop_prob", "block_size"), [((4, 3, 8, 8), 0.1, 3), ((2, 5, 9, 7), 0.3, 4), ((3, 2, 4, 4), 0.2, 7)]
)
def test_dropblock_gives_timms_output_on_the_same_seed(shape, drop_prob: float, block_size: int) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    theirs = timm_drop.DropBlock2d(drop_prob, block_size).train()(x)
    torch.manual_seed(5)
    ours = DropBlock2d(drop_prob, block_size).train()(x)
    assert torch.equal(ours, theirs)
    assert bool((ours == 0).any())


def test_dropblock_gamma_is_the_one_timm_computes() -> None:
    # timm computes gamma inline; recover it from the Bernoulli draw's mean over many seeds' worth of centres
    h = w = 12
    torch.manual_seed(0)
    x = torch.ones(4000, 1, h, w)
    theirs = timm_drop.drop_block_2d(x, 0.2, 1)  # block 1: every seed is one dropped pixel
    assert float((theirs == 0).float().mean()) == pytest.approx(dropblock_gamma(0.2, 1, h, w), rel=3e-2)
