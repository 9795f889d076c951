"""Pure augmentation functions: known answers, per-sample draws, determinism, ZCA, mixers, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2

from lightning_reg.core.augment import (
    AugmentConfig,
    affine_matrices,
    augment_batch,
    build_cpu_transform,
    fit_standardizer,
    mix_batch,
    sample_affine_params,
    sample_beta,
    sample_erasing_boxes,
    warp_affine,
)
from lightning_reg.core.augment.geometric import AFFINE_KEYS
from lightning_reg.errors import ConfigError


def params(n: int = 1, **kw: float) -> dict[str, torch.Tensor]:
    p = {k: torch.zeros(n) for k in AFFINE_KEYS} | {"zoom_x": torch.ones(n), "zoom_y": torch.ones(n)}
    return p | {k: torch.full((n,), float(v)) for k, v in kw.items()}


def warp(x: torch.Tensor, fill: str = "constant", **kw: float) -> torch.Tensor:
    return warp_affine(x, affine_matrices(params(x.shape[0], **kw), x.shape[-2], x.shape[-1]), fill, 0.0)


@pytest.mark.parametrize("k", [1, 3])
def test_shift_moves_content_by_exactly_k_pixels(k: int) -> None:
    x = torch.rand(2, 3, 9, 12)
    right = warp(x, shift_x=k)
    assert torch.allclose(right[..., :, k:], x[..., :, :-k], atol=1e-5)
    assert torch.allclose(right[..., :, :k], torch.zeros(1), atol=1e-5)  # constant fill
    down = warp(x, shift_y=k)
    assert torch.allclose(down[..., k:, :], x[..., :-k, :], atol=1e-5)


def test_crop_offset_is_an_exact_integer_shift_like_padded_crop() -> None:
    x = torch.rand(1, 1, 8, 8)
    out = warp(x, crop_x=2, crop_y=-1)
    expected = v2.functional.crop(v2.functional.pad(x, [4]), 4 + 1, 4 - 2, 8, 8)  # top = p - dy, left = p - dx
    assert torch.allclose(out, expected, atol=1e-5)


def test_rotation_by_90_degrees_is_rot90_counter_clockwise() -> None:
    x = torch.rand(2, 1, 7, 7)
    assert torch.allclose(warp(x, angle=90.0), torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(warp(x, angle=-90.0), torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)


def test_horizontal_and_vertical_flip_are_exact() -> None:
    x = torch.rand(2, 3, 5, 6)
    assert torch.allclose(warp(x, hflip=1), x.flip(-1), atol=1e-5)
    assert torch.allclose(warp(x, vflip=1), x.flip(-2), atol=1e-5)


def test_zoom_above_one_zooms_out_as_in_keras() -> None:
    x = torch.zeros(1, 1, 21, 21)
    x[..., 6:15, 6:15] = 1.0
    out = warp(x, zoom_x=2.0, zoom_y=2.0)
    assert out.sum() < x.sum() / 2  # the square shrinks to about a quarter of its area
    assert out[0, 0, 10, 10] > 0.9


def test_fill_modes_fill_the_uncovered_border() -> None:
    x = torch.rand(1, 1, 6, 6) + 1.0
    assert torch.allclose(warp(x, "nearest", shift_x=2)[..., :, :2], x[..., :, :1].expand(-1, -1, -1, 2), atol=1e-5)
    assert torch.allclose(warp(x, "reflect", shift_x=2)[..., :, :2], x[..., :, :2].flip(-1), atol=1e-5)
    assert torch.allclose(warp(x, "wrap", shift_x=2)[..., :, 2:], x[..., :, :-2], atol=1e-5)
    cval = warp_affine(x, affine_matrices(params(1, shift_x=2), 6, 6), "constant", 0.25)
    assert torch.allclose(cval[..., :, :2], torch.tensor(0.25), atol=1e-5)


def test_device_path_draws_different_parameters_per_sample() -> None:
    cfg = AugmentConfig(
        rotation_range=30,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=10,
        zoom_range=0.2,
        horizontal_flip=True,
        erasing_prob=1.0,
    )
    x = torch.rand(1, 1, 16, 16).expand(32, -1, -1, -1).contiguous()  # the same image 32 times
    out, p = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    for key in ("angle", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y"):
        assert p[key].unique().numel() == 32, key
    assert 0 < p["hflip"].sum() < 32
    assert p["erase_box"][:, :2].unique(dim=0).shape[0] > 16
    assert len({tuple(o.flatten().tolist()) for o in out}) == 32  # 32 different outputs of one input


def test_same_seed_same_batch_and_different_seed_different_batch() -> None:
    cfg = AugmentConfig(
        rotation_range=20,
        width_shift_range=0.1,
        horizontal_flip=True,
        brightness_range=[0.8, 1.2],
        erasing_prob=0.5,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
    )
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 10

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        out, _ = augment_batch(x, cfg, g)
        out, soft, _ = mix_batch(out, y, 10, cfg, g)
        return out, soft

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_zca_whitening_gives_identity_covariance() -> None:
    # Correlated 4x4 "images": a random mixing of independent sources, plus per-pixel offsets.
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(16, 16, generator=g)
    offsets = torch.rand(16, generator=g)

    def sample(n: int) -> torch.Tensor:
        return (torch.randn(n, 16, generator=g) @ mixing + offsets).view(n, 1, 4, 4)

    train, held_out = sample(4000), sample(4000)
    s = fit_standardizer(train, zca=True, zca_epsilon=1e-6)

    def cov(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(z.shape[0], -1).double()
        flat = flat - flat.mean(0)
        return flat.T @ flat / flat.shape[0]

    eye = torch.eye(16, dtype=torch.float64)
    assert (cov(train) - eye).abs().max() > 1.0  # the input is far from white
    # Tolerances: on the fitting data only float32 rounding and eps remain; on held-out data sampling error of a
    # 16x16 covariance from 4000 draws (std ~ 1/sqrt(4000) ~ 0.016 per entry) dominates.
    assert (cov(s(train)) - eye).abs().max() < 1e-3
    assert (cov(s(held_out)) - eye).abs().max() < 0.1


def test_featurewise_stats_are_per_channel() -> None:
    x = torch.stack([torch.full((2, 2), 0.2), torch.full((2, 2), 0.8)]).unsqueeze(0).repeat(10, 1, 1, 1)
    x[:5, 1] = 0.6
    s = fit_standardizer(x, center=True, std_normalization=True)
    assert torch.allclose(s.mean, torch.tensor([0.2, 0.7]))
    out = s(x)
    assert torch.allclose(out[:, 1].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(out[:, 1].std(unbiased=False), torch.tensor(1.0), atol=1e-4)


def test_zca_on_too_small_data_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"zca_whitening.*C\*H\*W = 64.*got 50 images"):
        fit_standardizer(torch.rand(50, 1, 8, 8), zca=True)


@pytest.mark.parametrize("mode", ["elem", "batch", "pair"])
@pytest.mark.parametrize("alphas", [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixers_give_soft_targets_summing_to_one(mode: str, alphas: tuple[float, float]) -> None:
    cfg = AugmentConfig(mixup_alpha=alphas[0], cutmix_alpha=alphas[1], mix_mode=mode, label_smoothing=0.1)
    x, y = torch.rand(16, 3, 8, 8), torch.arange(16) % 5
    out, soft, p = mix_batch(x, y, 5, cfg, torch.Generator().manual_seed(0))
    assert soft.shape == (16, 5) and out.shape == x.shape
    assert torch.allclose(soft.sum(1), torch.ones(16), atol=1e-6)
    lam = p["lam"]
    # The target weight of the own class is lam (plus smoothing), and of the partner's 1 - lam.
    expected = lam * (0.9 + 0.02) + (1 - lam) * 0.02 + (y == y.flip(0)).float() * (1 - lam) * 0.9
    assert torch.allclose(soft[torch.arange(16), y], expected, atol=1e-5)
    if mode == "batch":
        assert lam.unique().numel() == 1
    if mode == "elem":
        assert lam.unique().numel() > 8


def test_cutmix_lambda_is_the_exact_kept_area() -> None:
    cfg = AugmentConfig(cutmix_alpha=1.0)
    x = torch.zeros(8, 1, 10, 10)
    x[:4] = 1.0  # partner of i < 4 is a zero image
    out, _, p = mix_batch(x, torch.arange(8), 8, cfg, torch.Generator().manual_seed(3))
    kept = out[:4].mean((1, 2, 3))
    assert torch.allclose(kept, p["lam"][:4], atol=1e-6)


def test_mixup_pair_mode_with_an_odd_batch_is_a_config_error() -> None:
    cfg = AugmentConfig(mixup_alpha=0.2, mix_mode="pair")
    with pytest.raises(ConfigError, match=r"mix_mode='pair'.*even batch.*got a batch of 7"):
        mix_batch(torch.rand(7, 1, 4, 4), torch.arange(7), 7, cfg)
    # elem mode has no pairing requirement
    mix_batch(torch.rand(7, 1, 4, 4), torch.arange(7), 7, AugmentConfig(mixup_alpha=0.2))


def test_beta_sampler_matches_beta_moments() -> None:
    b = sample_beta(40000, 0.4, torch.Generator().manual_seed(0))
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389 for a = 0.4.
    assert abs(b.mean().item() - 0.5) < 0.01
    assert abs(b.var().item() - 1 / (4 * 1.8)) < 0.01


def test_batched_erasing_matches_torchvision_box_distribution() -> None:
    n, h, w = 4000, 16, 16
    boxes = sample_erasing_boxes(n, h, w, 0.5, (0.02, 0.33), (0.3, 3.3), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    tv = v2.RandomErasing(1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0)
    ref = torch.tensor(
        [[p["h"], p["w"]] for p in (tv.make_params([torch.zeros(1, h, w)]) for _ in range(n))], dtype=torch.float
    )
    erased = boxes[boxes[:, 2] > 0][:, 2:].float()
    assert abs(len(erased) / n - 0.5) < 0.03
    assert abs(erased.mean() - ref.mean()) < 0.3  # means of h, w in pixels agree
    assert (boxes[:, 0] + boxes[:, 2] <= h).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rotation_range": -5}, r"augment.rotation_range.*got -5"),
        ({"width_shift_range": -0.1}, r"augment.width_shift_range"),
        ({"zoom_range": [1.2, 0.8]}, r"augment.zoom_range.*low <= high"),
        ({"brightness_range": [-0.5, 1.0]}, r"augment.brightness_range"),
        ({"policy": "randomaugment", "augment_on": "cpu"}, r"augment.policy.*'randaugment'.*got 'randomaugment'"),
        ({"policy": "autoaugment"}, r"augment_on='cpu'"),  # randaugment/trivialaugment/augmix also run on the device
        ({"fill_mode": "mirror"}, r"augment.fill_mode.*'nearest'.*got 'mirror'"),
        ({"mix_mode": "pairs"}, r"augment.mix_mode"),
        ({"erasing_prob": 1.5}, r"augment.erasing_prob"),
    ],
)
def test_bad_augmentation_options_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        AugmentConfig(**kwargs)


def test_unknown_option_and_bad_policy_kwargs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['rotation'\]"):
        AugmentConfig.from_any({"rotation": 10})
    with pytest.raises(ConfigError, match=r"policy_kwargs.*'randaugment'"):
        build_cpu_transform(AugmentConfig(augment_on="cpu", policy="randaugment", policy_kwargs={"num_ops": -1}), 8, 8)


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment", "autoaugment", "augmix"])
@pytest.mark.parametrize("channels", [1, 3])
def test_cpu_policies_run_per_sample_on_uint8_and_float(policy: str, channels: int) -> None:
    t = build_cpu_transform(AugmentConfig(augment_on="cpu", policy=policy, erasing_prob=0.5), 12, 12)
    for img in (torch.randint(0, 256, (channels, 12, 12), dtype=torch.uint8), torch.rand(channels, 12, 12)):
        out = t(img)
        assert out.dtype == torch.float32 and out.shape == (channels, 12, 12)
        assert 0.0 <= out.min() and out.max() <= 1.0 + 1e-6


def test_sampled_ranges_respect_the_config() -> None:
    cfg = AugmentConfig(rotation_range=15, width_shift_range=0.25, zoom_range=[0.5, 0.9], crop_padding=3)
    p = sample_affine_params(5000, cfg, 10, 20, torch.Generator().manual_seed(0))
    assert p["angle"].abs().max() <= 15 and p["angle"].abs().max() > 14
    assert p["shift_x"].abs().max() <= 5.0 and p["shift_y"].abs().max() == 0
    assert 0.5 <= p["zoom_x"].min() and p["zoom_x"].max() <= 0.9
    assert set(p["crop_x"].unique().tolist()) == set(range(-3, 4))
    assert math.isclose(p["angle"].mean().item(), 0.0, abs_tol=0.5)
