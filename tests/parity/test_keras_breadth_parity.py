"""Parity with Keras 3 (``KERAS_BACKEND=torch``) for label smoothing and the injected noise layers, and with
timm's ``DropBlock2d``: the same loss and gradient on the same logits, the same statistics of the noise.

Keras and timm are test-only (``pip install -e ".[parity]"``); without Keras every test here skips with that reason.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

os.environ["KERAS_BACKEND"] = "torch"  # read when keras is first imported; these tests are defined on it
keras = pytest.importorskip(
    "keras", minversion="3.15", reason='keras>=3.15 is not installed (pip install -e ".[parity]")'
)
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()!r} backend, not torch", allow_module_level=True)

from lightning_reg.core.augment.mixers import smooth_labels  # noqa: E402
from lightning_reg.core.noise import GaussianDropout, GaussianNoise, SpatialDropout  # noqa: E402
from lightning_reg.models.classifier import soft_cross_entropy  # noqa: E402


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_gives_keras_categorical_crossentropy_loss_and_gradient(smoothing: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (32,), generator=gen)
    ours_logits = logits.clone().requires_grad_(True)
    ours = soft_cross_entropy(ours_logits, smooth_labels(y, 10, smoothing).double())
    ours.backward()
    keras_logits = logits.clone().requires_grad_(True)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
    theirs = loss(torch.nn.functional.one_hot(y, 10).double(), keras_logits)
    theirs.backward()
    torch.testing.assert_close(ours.double(), theirs.double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours_logits.grad, keras_logits.grad, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------- the noise layers
def _stats(t: torch.Tensor) -> tuple[float, float]:
    return float(t.double().mean()), float(t.double().std())


def _keras(layer: object, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(layer(x, training=True))  # type: ignore[operator]  # a torch tensor on this backend


def test_gaussian_noise_has_keras_statistics() -> None:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    x = torch.randn(400_000) * 2 + 1
    ours = GaussianNoise(0.3)(x) - x
    theirs = _keras(keras.layers.GaussianNoise(0.3), x) - x
    for a, b in zip(_stats(ours), _stats(theirs)):
        assert a == pytest.approx(b, abs=4e-3)
    assert _stats(ours)[1] == pytest.approx(0.3, rel=1e-2)
    assert torch.equal(GaussianNoise(0.3).eval()(x), x)


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_gaussian_dropout_has_keras_statistics(rate: float) -> None:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    x = torch.ones(400_000)
    ours, theirs = _stats(GaussianDropout(rate)(x)), _stats(_keras(keras.layers.GaussianDropout(rate), x))
    assert ours[0] == pytest.approx(theirs[0], abs=5e-3) and ours[1] == pytest.approx(theirs[1], rel=1e-2)
    assert ours[1] == pytest.approx(math.sqrt(rate / (1 - rate)), rel=1e-2)


def test_alpha_dropout_keeps_selu_statistics_as_keras_does_with_the_same_dropped_value() -> None:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    x = torch.selu(torch.randn(400_000))
    ours, theirs = nn.AlphaDropout(0.2).train()(x), _keras(keras.layers.AlphaDropout(0.2), x)
    for a, b in zip(_stats(ours), _stats(theirs)):
        assert a == pytest.approx(b, abs=6e-3)
    # the value a dropped unit takes, a * (-alpha * scale) + b, is the same
    assert float(ours.min()) == pytest.approx(float(theirs.min()), abs=1e-5)
    assert float((ours == ours.min()).float().mean()) == pytest.approx(0.2, abs=5e-3)


def test_spatial_dropout_drops_channels_as_keras_spatial_dropout_2d_channels_first() -> None:
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    x = torch.rand(400, 50, 3, 3) + 0.5
    ours = SpatialDropout(0.3)(x) / x
    theirs = _keras(keras.layers.SpatialDropout2D(0.3, data_format="channels_first"), x) / x
    for y in (ours, theirs):
        channel = y.flatten(2)
        torch.testing.assert_close(channel.amin(2), channel.amax(2))  # whole channels
        kept = channel[..., 0]
        assert bool((torch.isclose(kept, torch.tensor(0.0)) | torch.isclose(kept, torch.tensor(1 / 0.7))).all())
    assert float((ours[..., 0, 0] == 0).float().mean()) == pytest.approx(
        float((theirs[..., 0, 0] == 0).float().mean()), abs=0.01
    )
