"""ScheduledDropout with inject_kind: Keras' noise layers and timm's DropBlock injected and scheduled in real fits."""

from __future__ import annotations

import functools

import pytest
import torch

from lightning_reg import ScheduledDropout
from lightning_reg.errors import ConfigError
from lightning_reg.models import CNNClassifier

from helpers import TinyModule, fit

fit2 = functools.partial(fit, max_epochs=2)


@pytest.mark.parametrize("kind", ["gaussian_noise", "gaussian_dropout", "alpha_dropout"])
def test_each_dense_kind_is_injected_and_follows_the_schedule(kind: str) -> None:
    model = TinyModule()
    keys = sorted(model.state_dict())
    cb = ScheduledDropout({0: 0.1, 1: 0.3}, inject=["ReLU"], inject_kind=kind, verbose=False)
    fit2(model, cb)
    assert cb.injected == [f"net.1.injected_{kind}"] and cb.target_names == cb.injected
    assert cb.run_summary()["module_rates"] == {f"net.1.injected_{kind}": 0.3}
    assert sorted(model.state_dict()) == keys


def _cnn() -> CNNClassifier:
    return CNNClassifier(input_shape=(1, 8, 8), num_classes=4, conv_channels=[4, 4], padding=1, dense_sizes=[8])


def _images() -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    gen = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(
        torch.rand(64, 1, 8, 8, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    )
    return torch.utils.data.DataLoader(ds, batch_size=16), torch.utils.data.DataLoader(ds, batch_size=32)


@pytest.mark.parametrize("kind", ["spatial_dropout", "dropblock"])
def test_feature_map_kinds_on_a_cnn_with_depth_scaling(kind: str) -> None:
    options = {"block_size": 3} if kind == "dropblock" else None
    modules = ["DropBlock2d" if kind == "dropblock" else "SpatialDropout"]  # not the CNN's own dense dropout
    cb = ScheduledDropout(
        0.2, modules=modules, inject=["Conv2d"], inject_kind=kind, inject_options=options, depth_scale=True
    )
    fit2(_cnn(), cb, data=_images)
    rates = cb.run_summary()["module_rates"]
    # two conv layers, two depth levels: rate * (l + 1) / L, as drop-path gets it
    assert rates == {f"net.0.0.injected_{kind}": pytest.approx(0.1), f"net.0.3.injected_{kind}": pytest.approx(0.2)}


def test_a_feature_map_kind_after_a_dense_layer_fails_with_the_reason() -> None:
    cb = ScheduledDropout(0.2, inject=["ReLU"], inject_kind="dropblock", verbose=False)
    with pytest.raises(ConfigError, match=r"DropBlock2d drops blocks of \(N, C, H, W\) feature maps"):
        fit2(TinyModule(), cb)


def test_dropout_and_noise_from_two_instances_each_schedule_their_own() -> None:
    model = TinyModule()
    drop = ScheduledDropout(0.25, inject=["ReLU"], verbose=False, log_name="reg/dropout_p")
    noise = ScheduledDropout(0.05, inject=["ReLU"], inject_kind="gaussian_noise", verbose=False, log_name="reg/noise")
    fit2(model, drop, noise)
    assert drop.run_summary()["module_rates"] == {"net.1.injected_dropout": 0.25}
    assert noise.run_summary()["module_rates"] == {"net.1.injected_gaussian_noise": 0.05}
    assert drop.state_key != noise.state_key


def test_the_default_kind_keeps_the_state_key_of_earlier_checkpoints() -> None:
    cb = ScheduledDropout(0.1, inject=["ReLU"])
    assert "inject_kind" not in cb.state_key
    assert "inject_kind" in ScheduledDropout(0.1, inject=["ReLU"], inject_kind="gaussian_noise").state_key
