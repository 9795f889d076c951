"""Reference models: every model x optimizer trains (fast_dev_run), soft targets work, bad args are refused."""

from __future__ import annotations

import pytest
import torch

from lightning_reg.errors import ConfigError
from lightning_reg.models import CNNClassifier, MLPClassifier, soft_cross_entropy
from lightning_reg.train import train

MODELS = ["mlp", "cnn"]
OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model_and_optimizer(compose_cfg, model: str, optimizer: str) -> None:
    cfg = compose_cfg(f"model={model}", f"optimizer={optimizer}", "trainer=debug", "+trainer.fast_dev_run=true",
                      "logger=none", "callbacks=none")
    summary = train(cfg)
    assert summary["status"] == "completed"
    assert summary["global_step"] == 1
    assert 0.0 <= summary["test"]["test/acc"] <= 1.0
    assert torch.isfinite(torch.tensor(summary["test"]["test/loss"]))


def test_source_material_networks_are_expressible() -> None:
    mlp = MLPClassifier(input_shape=(1, 28, 28), num_classes=10, hidden_sizes=[500] * 5)
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500)] + [(500, 500)] * 4 + [(500, 10)]
    cnn = CNNClassifier(input_shape=(3, 32, 32))
    convs = [m.out_channels for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [(m.in_features, m.out_features) for m in cnn.modules() if isinstance(m, torch.nn.Linear)]
    assert convs == [32, 64, 64]
    assert dense == [(4 * 4 * 64, 64), (64, 10)]  # 32 -> 30 -> 15 -> 13 -> 6 -> 4 with 'valid' convs
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in cnn.modules())
    assert cnn(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_batch_norm_and_activation_options() -> None:
    m = MLPClassifier(hidden_sizes=[16, 8], activation="gelu", batch_norm=True, dropout=0.1, input_dropout=0.2)
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == ["Flatten", "Dropout", "Linear", "BatchNorm1d", "GELU", "Dropout", "Linear", "BatchNorm1d",
                     "GELU", "Dropout", "Linear"]


def test_soft_targets_equal_hard_targets_for_one_hot() -> None:
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    onehot = torch.nn.functional.one_hot(y, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, y), soft_cross_entropy(logits, onehot))
    mixed = 0.7 * onehot + 0.3 * onehot.roll(1, 0)
    expected = -(mixed * logits.log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(logits, mixed), expected)


def test_training_step_accepts_soft_targets() -> None:
    m = MLPClassifier(input_shape=(1, 8, 8), hidden_sizes=[8])
    x = torch.randn(4, 1, 8, 8)
    soft = torch.softmax(torch.randn(4, 10), -1)
    loss = m.training_step((x, soft), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize(
    ("kwargs", "fragment", "given"),
    [
        ({"activation": "swish"}, "`activation` must be one of 'relu'", "'swish'"),
        ({"dropout": 1.0}, "`dropout` must be in [0.0, 1.0)", "1.0"),
        ({"hidden_sizes": [16, 0]}, "`hidden_sizes[1]` must be an integer in [1, inf]", "0"),
        ({"hidden_sizes": "64"}, "`hidden_sizes` must be a list", "'64'"),
        ({"num_classes": 1}, "`num_classes` must be an integer in [2, inf]", "1"),
        ({"label_smoothing": -0.1}, "`label_smoothing` must be in [0.0, 1.0)", "-0.1"),
    ],
)
def test_mlp_bad_arguments(kwargs: dict, fragment: str, given: str) -> None:
    with pytest.raises(ConfigError) as err:
        MLPClassifier(**kwargs)
    assert fragment in str(err.value)
    assert f"got {given}" in str(err.value)


def test_cnn_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="`pool_after` entries"):
        CNNClassifier(pool_after=[5])
    with pytest.raises(ConfigError, match="too small"):
        CNNClassifier(input_shape=(1, 8, 8), padding=0)
    with pytest.raises(ConfigError, match=r"\(channels, height, width\)"):
        CNNClassifier(input_shape=(8, 8))
