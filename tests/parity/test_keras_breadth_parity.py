"""Parity with Keras 3 (``KERAS_BACKEND=torch``) for label smoothing and the injected noise layers, and with
timm's ``DropBlock2d``: the same loss and gradient on the same logits, the same statistics of the noise.

Keras and timm are test-only (``pip install -e ".[parity]"``); without Keras every test here skips with that reason.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ["KERAS_BACKEND"] = "torch"  # read when keras is first imported; these tests are defined on it
keras = pytest.importorskip(
    "keras", minversion="3.15", reason='keras>=3.15 is not installed (pip install -e ".[parity]")'
)
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()!r} backend, not torch", allow_module_level=True)

from lightning_reg.core.augment.mixers import smooth_labels  # noqa: E402
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
