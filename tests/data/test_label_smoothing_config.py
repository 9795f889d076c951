"""`data.augment.label_smoothing` from the command line acts on its own (it used to act only with the mixers)."""

from __future__ import annotations

import torch
from hydra.utils import instantiate


def test_augment_label_smoothing_alone_gives_soft_training_targets(compose_cfg) -> None:
    cfg = compose_cfg("data.augment.label_smoothing=0.1")
    dm = instantiate(cfg.data)
    _, y = dm.augment_training_batch(torch.rand(3, 1, 8, 8), torch.tensor([0, 5, 9]))
    assert y.shape == (3, 10)
    torch.testing.assert_close(y[1, 5], torch.tensor(0.91))
    torch.testing.assert_close(y.sum(1), torch.ones(3))
