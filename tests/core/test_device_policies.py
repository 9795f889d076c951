"""RandAugment and TrivialAugmentWide on the device path against torchvision v2: the op list, the magnitude tables,
each op's output, and one draw per sample."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from lightning_reg.core.augment import AugmentConfig, augment_batch
from lightning_reg.core.augment.policies import apply_op, magnitudes, op_space, policy_batch

TORCHVISION = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide, "augmix": v2.AugMix}


@pytest.mark.parametrize("policy", sorted(TORCHVISION))
def test_the_op_list_and_magnitude_tables_are_torchvisions(policy: str) -> None:
    theirs = TORCHVISION[policy]._AUGMENTATION_SPACE  # torchvision's table, read here only to compare
    assert op_space(policy) == list(theirs)
    for op, (table, signed) in theirs.items():
        for bins, h, w in ((31, 32, 32), (10, 28, 20)):  # AugMix uses 10 bins
            ours, our_signed = magnitudes(policy, op, bins, h, w)
            expected = table(bins, h, w)
            assert our_signed == signed, op
            if expected is None:
                assert ours is None, op
            else:
                assert ours is not None and torch.equal(ours, expected), op


def _images(n: int = 6, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, 12, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("op", op_space("randaugment"))
@pytest.mark.parametrize("magnitude", [0.3, -0.7, 5.0])
@pytest.mark.parametrize("bilinear", [False, True])  # RandAugment/TrivialAugment: nearest; AugMix: bilinear
def test_each_op_on_a_batch_is_torchvisions_op_on_each_image(op: str, magnitude: float, bilinear: bool) -> None:
    if op == "Posterize":
        magnitude = abs(magnitude) + 2
    if op == "Solarize":
        magnitude = min(abs(magnitude), 1.0)
    mode = v2.InterpolationMode.BILINEAR if bilinear else v2.InterpolationMode.NEAREST
    policy = v2.RandAugment(interpolation=mode)
    imgs = _images()
    ours = apply_op(imgs, op, magnitude, bilinear)
    for i in range(len(imgs)):
        theirs = policy._apply_image_or_video_transform(imgs[i], op, magnitude, interpolation=mode, fill=policy._fill)
        assert torch.equal(ours[i], theirs), (op, magnitude, i)


@pytest.mark.parametrize("policy", sorted(TORCHVISION))
def test_every_sample_gets_its_own_draw_and_a_seed_repeats_the_batch(policy: str) -> None:
    x = torch.rand(1, 3, 16, 16).expand(64, 3, 16, 16).contiguous()
    out = policy_batch(x, policy, None, torch.Generator().manual_seed(0))
    distinct = {tuple(img.flatten().tolist()) for img in out}
    assert len(distinct) > 8  # 13-14 ops (x bins, signs, and AugMix's weights): many results for one image
    again = policy_batch(x, policy, None, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert out.min() >= 0 and out.max() <= 1


def test_the_device_path_runs_the_policy_before_the_keras_geometry() -> None:
    cfg = AugmentConfig(policy="trivialaugment", horizontal_flip=True)
    x = torch.rand(8, 1, 8, 8)
    out, _ = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.equal(out, x)
    # the policy alone, then the flips, with the same generator, give the same batch
    gen = torch.Generator().manual_seed(1)
    from lightning_reg.core.augment.geometric import apply_geometry

    expected, _ = apply_geometry(policy_batch(x, "trivialaugment", {}, gen), cfg, gen)
    assert torch.equal(out, expected)


def test_augmix_on_the_device_mixes_each_image_with_its_own_weights() -> None:
    # Dirichlet(alpha, alpha) weights of the original image: with a tiny alpha they are nearly 0 or 1, so about half
    # the samples come out as the original image (up to uint8 truncation) and the rest as pure chains; with
    # torchvision's alpha=1 the original is almost never returned as it was.
    x = torch.rand(200, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    x = (x * 255).round() / 255

    def unchanged(alpha: float) -> float:
        out = policy_batch(x, "augmix", {"alpha": alpha}, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and torch.equal((out * 255).round(), (out * 255).round().clamp(0, 255))
        return float(((out - x).flatten(1).abs().amax(1) <= 1.5 / 255).float().mean())

    assert 0.3 < unchanged(0.01) < 0.7
    assert unchanged(1.0) < 0.1
