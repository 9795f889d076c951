"""The injectable noise modules (core/noise.py) and their injection (core/injection.py), on plain torch modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_reg.core.dropout import find_dropout_modules, injected_kind
from lightning_reg.core.injection import INJECT_KINDS, inject_dropout, injected_names
from lightning_reg.core.noise import DropBlock2d, GaussianDropout, GaussianNoise, SpatialDropout, dropblock_gamma
from lightning_reg.errors import ConfigError

MODULES = {
    "gaussian_noise": lambda: GaussianNoise(0.3),
    "gaussian_dropout": lambda: GaussianDropout(0.3),
    "spatial_dropout": lambda: SpatialDropout(0.3),
    "alpha_dropout": lambda: nn.AlphaDropout(0.3),
    "dropblock": lambda: DropBlock2d(0.3, block_size=3),
}


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_each_module_is_the_identity_in_eval_and_random_in_training(kind: str) -> None:
    x = torch.randn(8, 4, 6, 6)
    module = MODULES[kind]()
    assert module.eval()(x) is x or torch.equal(module.eval()(x), x)
    torch.manual_seed(0)
    assert not torch.equal(module.train()(x), x)


def test_gaussian_noise_adds_noise_of_its_stddev() -> None:
    torch.manual_seed(0)
    x = torch.full((200_000,), 3.0)
    noise = GaussianNoise(0.25)(x) - x
    assert abs(float(noise.mean())) < 3e-3 and float(noise.std()) == pytest.approx(0.25, rel=1e-2)


def test_gaussian_dropout_has_the_mean_and_variance_of_dropout() -> None:
    torch.manual_seed(0)
    x = torch.ones(400_000)
    for p in (0.1, 0.5):
        factor = GaussianDropout(p)(x)
        dropout = nn.Dropout(p)(x)
        assert float(factor.mean()) == pytest.approx(1.0, abs=5e-3)
        assert float(factor.var()) == pytest.approx(p / (1 - p), rel=2e-2)
        assert float(factor.var()) == pytest.approx(float(dropout.var()), rel=3e-2)


def test_spatial_dropout_drops_whole_channels_at_its_rate() -> None:
    torch.manual_seed(0)
    y = SpatialDropout(0.25)(torch.ones(500, 40, 3, 3))
    per_channel = y.flatten(2)
    assert torch.equal(per_channel.amin(2), per_channel.amax(2))  # a channel is all dropped or all kept
    kept = per_channel[..., 0]
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert float((kept == 0).float().mean()) == pytest.approx(0.25, abs=0.01)


def test_spatial_dropout_and_dropblock_refuse_inputs_without_feature_maps() -> None:
    with pytest.raises(ConfigError, match=r"SpatialDropout drops channels .* shape \(4, 8\)"):
        SpatialDropout(0.2)(torch.ones(4, 8))
    with pytest.raises(ConfigError, match=r"DropBlock2d drops blocks .* shape \(4, 8, 5\)"):
        DropBlock2d(0.2, 3)(torch.ones(4, 8, 5))


def test_dropblock_gamma_is_timms_and_the_dropped_fraction_follows_drop_prob() -> None:
    # timm: gamma = drop_prob * H * W / block^2 / ((H - block + 1) * (W - block + 1))
    assert dropblock_gamma(0.1, 3, 8, 8) == pytest.approx(0.1 * 64 / 9 / 36)
    assert dropblock_gamma(0.1, 7, 4, 5) == pytest.approx(0.1 * 20 / 20 / 1)  # block clipped to the map
    torch.manual_seed(0)
    y = DropBlock2d(0.1, block_size=3)(torch.ones(2000, 1, 16, 16))
    dropped = float((y == 0).float().mean())
    assert 0.08 < dropped < 0.13  # gamma aims at drop_prob; overlapping blocks and the border shift it a little
    zeros = (y[:, 0] == 0).float()
    # blocks: a dropped pixel away from the border has a dropped 3x3 neighbourhood around some centre
    assert float(torch.nn.functional.max_pool2d(zeros[:, None], 3, 1, 1).mean()) > dropped


@pytest.mark.parametrize("block", [2, 4])
def test_dropblock_with_an_even_block_keeps_the_shape(block: int) -> None:
    torch.manual_seed(0)
    assert DropBlock2d(0.3, block)(torch.ones(3, 2, 7, 9)).shape == (3, 2, 7, 9)


@pytest.mark.parametrize("kind", sorted(INJECT_KINDS))
def test_every_kind_injects_without_changing_state_dict_keys_and_is_schedulable(kind: str) -> None:
    def net() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())

    model, keys = net(), sorted(net().state_dict())
    added = inject_dropout(model, ["Conv2d"], p=0.2, kind=kind)
    child = "injected_dropout" if kind == "dropout" else f"injected_{kind}"
    assert added == [f"0.{child}", f"2.{child}"]
    assert sorted(model.state_dict()) == keys
    assert inject_dropout(model, ["Conv2d"], p=0.2, kind=kind) == []  # idempotent
    assert injected_names(model) == added and injected_names(model, "other") == []
    targets = find_dropout_modules(model)
    assert [t.name for t in targets] == added and all(t.get() == pytest.approx(0.2) for t in targets)
    assert all(injected_kind(t.module) == kind for t in targets)
    torch.manual_seed(0)
    x = torch.randn(4, 1, 6, 6)
    trained = model.train()(x)
    assert trained.shape == (4, 4, 6, 6) and not torch.equal(trained, model.eval()(x))


def test_two_kinds_after_the_same_layer_both_apply() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    inject_dropout(model, ["ReLU"], p=0.5)
    inject_dropout(model, ["ReLU"], p=0.5, kind="gaussian_noise")
    assert injected_names(model) == ["1.injected_dropout", "1.injected_gaussian_noise"]
    torch.manual_seed(0)
    y = model.train()(torch.ones(1000, 3) * 10)
    assert float((y == 0).float().mean()) == 0.0  # the noise comes after the dropout's zeros
    assert math.isfinite(float(y.std()))


def test_inject_options_are_checked_per_kind() -> None:
    with pytest.raises(ConfigError, match=r"`inject_options` for inject_kind='gaussian_noise' takes no options"):
        inject_dropout(nn.Sequential(nn.ReLU()), ["ReLU"], kind="gaussian_noise", options={"block_size": 3})
    with pytest.raises(ConfigError, match=r"`block_size`.*0"):
        inject_dropout(nn.Sequential(nn.ReLU()), ["ReLU"], kind="dropblock", options={"block_size": 0})
    with pytest.raises(ConfigError, match=r"`inject_kind`.*'noise'"):
        inject_dropout(nn.Sequential(nn.ReLU()), ["ReLU"], kind="noise")
