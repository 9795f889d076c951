"""`augment=randaugment|trivialaugment data.augment.augment_on=device`: the policy batched after transfer."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate


@pytest.mark.parametrize("preset", ["randaugment", "trivialaugment"])
def test_the_preset_on_the_device_path_augments_training_batches_per_sample(compose_cfg, preset: str) -> None:
    cfg = compose_cfg(f"augment={preset}", "data.augment.augment_on=device")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert dm.data_train.transform is None  # nothing per sample in the DataLoader
    x = dm.data_train.x[:32]
    out, y = dm.augment_training_batch(x, dm.data_train.y[:32], generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.equal(y, dm.data_train.y[:32])
    changed = (out - x).flatten(1).abs().amax(1) > 1 / 255
    assert int(changed.sum()) >= 16  # most draws change the image (Identity and some others may not)
