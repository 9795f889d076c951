"""Reference models: every model x optimizer trains (fast_dev_run), soft targets work, bad args are refused."""

from __future__ import annotations

import pytest
import torch

from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError
from lightning_reg.models import CNNClassifier, MLPClassifier, soft_cross_entropy

MODELS = ["mlp", "cnn"]
OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw", "keras_adam"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_every_model_and_optimizer(compose_cfg, model: str, optimizer: str) -> None:
    cfg = compose_cfg(
        f"model={model}",
        f"optimizer={optimizer}",
        "trainer=debug",
        "+trainer.fast_dev_run=true",
        "logger=none",
        "callbacks=none",
    )
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


def test_keras_init_gives_glorot_uniform_kernels_and_zero_biases() -> None:
    torch.manual_seed(0)
    for model in (
        MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500, 500], batch_norm=True, init="keras"),
        CNNClassifier(input_shape=(3, 32, 32), batch_norm=True, init="keras"),
    ):
        layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        assert len(layers) >= 3
        for m in layers:
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()  # out channels x receptive field
            limit = (6 / (fan_in + fan_out)) ** 0.5
            assert m.bias.eq(0).all()
            assert m.weight.abs().max() <= limit and m.weight.abs().max() > 0.95 * limit
            assert abs(m.weight.std().item() - limit / 3**0.5) < 0.1 * limit / 3**0.5  # U(-l, l): std l/sqrt(3)
    torch_mlp = MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500])  # torch's default: nonzero biases
    assert torch_mlp.net[1].bias.abs().max() > 0
    assert torch_mlp.net[1].weight.abs().max() < 0.6 * (6 / (784 + 500)) ** 0.5


def test_batch_norm_and_activation_options() -> None:
    m = MLPClassifier(hidden_sizes=[16, 8], activation="gelu", batch_norm=True, dropout=0.1, input_dropout=0.2)
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == [
        "Flatten",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Dropout",
        "Linear",
        "BatchNorm1d",
        "GELU",
        "Dropout",
        "Linear",
    ]


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
        ({"init": "glorot"}, "`init` must be one of 'torch', 'keras'", "'glorot'"),
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


class EpochMetricsProbe:
    """Computes, beside a real fit, what the epoch metrics must be: every training batch's loss and hits are
    measured before its step (no dropout, so the training forward is deterministic), validation in one pass."""

    def __init__(self) -> None:
        import lightning.pytorch as pl

        probe = self

        class _Callback(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                probe.batches = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                with torch.no_grad():
                    logits = pl_module(batch[0])
                probe.batches.append(
                    (
                        torch.nn.functional.cross_entropy(logits, batch[1], reduction="sum").item(),
                        (logits.argmax(-1) == batch[1]).sum().item(),
                        batch[1].numel(),
                    )
                )

            def on_train_epoch_end(self, trainer, pl_module):
                n = sum(b[2] for b in probe.batches)
                probe.train.append(
                    (
                        (sum(b[0] for b in probe.batches) / n, sum(b[1] for b in probe.batches) / n),
                        (trainer.callback_metrics["train/loss"].item(), trainer.callback_metrics["train/acc"].item()),
                    )
                )

            def on_validation_end(self, trainer, pl_module):
                x, y = trainer.val_dataloaders.dataset.tensors
                with torch.no_grad():
                    logits = pl_module(x)
                probe.val.append(
                    (
                        (
                            torch.nn.functional.cross_entropy(logits, y).item(),
                            (logits.argmax(-1) == y).float().mean().item(),
                        ),
                        (trainer.callback_metrics["val/loss"].item(), trainer.callback_metrics["val/acc"].item()),
                    )
                )

        self.callback = _Callback()
        self.batches: list[tuple[float, int, int]] = []
        self.train: list[tuple[tuple[float, float], tuple[float, float]]] = []
        self.val: list[tuple[tuple[float, float], tuple[float, float]]] = []


def test_epoch_metrics_are_exact_per_epoch_means_over_uneven_batches() -> None:
    """The per-step accumulators give the epoch's sample-weighted mean loss and accuracy, reset every epoch."""
    import functools

    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x, y = torch.randn(70, 6), torch.randint(0, 3, (70,))
    xv, yv = torch.randn(45, 6), torch.randint(0, 3, (45,))
    model = MLPClassifier(
        input_shape=(6,), hidden_sizes=[16], num_classes=3, optimizer=functools.partial(torch.optim.SGD, lr=0.5)
    )
    probe = EpochMetricsProbe()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[probe.callback],
    )
    # batches of 32, 32 and 6 (train) and 20, 20 and 5 (validation): an unweighted mean of batch means differs
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=32), DataLoader(TensorDataset(xv, yv), batch_size=20))
    assert len(probe.train) == 3 and len(probe.val) == 3
    for expected, logged in probe.train + probe.val:
        assert logged == pytest.approx(expected, abs=1e-5)
    # the model learns, so a metric that was not reset between epochs would be caught
    assert len({round(t[0][0], 6) for t in probe.train}) == 3
    test = trainer.test(model, DataLoader(TensorDataset(xv, yv), batch_size=20), verbose=False)[0]
    assert (test["test/loss"], test["test/acc"]) == pytest.approx(probe.val[-1][0], abs=1e-5)


def test_a_run_resumed_mid_epoch_still_logs_that_epochs_train_metrics(tmp_path) -> None:
    """Lightning skips on_train_epoch_start when it resumes mid-epoch; the epoch's remaining steps are logged."""
    import functools

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    def model() -> MLPClassifier:
        torch.manual_seed(0)
        return MLPClassifier(
            input_shape=(6,), hidden_sizes=[8], num_classes=3, optimizer=functools.partial(torch.optim.SGD, lr=0.1)
        )

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g))
    kw = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1, filename="{step}")
    pl.Trainer(max_steps=3, callbacks=[ckpt], **kw).fit(model(), DataLoader(data, batch_size=16))
    probe = EpochMetricsProbe()
    resumed = pl.Trainer(enable_checkpointing=False, callbacks=[probe.callback], **kw)
    resumed.fit(model(), DataLoader(data, batch_size=16), ckpt_path=tmp_path / "step=3.ckpt")
    assert len(probe.batches) == 3  # steps 4-6 of 6
    ((expected, logged),) = probe.train
    assert logged == pytest.approx(expected, abs=1e-5)


DDP_METRICS_SCRIPT = """
import functools, torch, lightning.pytorch as pl
from torch.utils.data import DataLoader, TensorDataset
from test_models import ddp_metrics_case
model, train, val = ddp_metrics_case()
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)
trainer.fit(model, DataLoader(train, batch_size=16), DataLoader(val, batch_size=20))
torch.save({k: float(v) for k, v in trainer.callback_metrics.items()}, OUT / f"rank{trainer.global_rank}.pt")
"""


def ddp_metrics_case():
    """A frozen model (lr 0) and data sets that split evenly over 2 ranks: 96 training and 64 validation samples."""
    import functools

    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(1)
    train = TensorDataset(torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g))
    val = TensorDataset(torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g))
    torch.manual_seed(0)
    model = MLPClassifier(
        input_shape=(6,), hidden_sizes=[16], num_classes=3, optimizer=functools.partial(torch.optim.SGD, lr=0.0)
    )
    return model, train, val


@pytest.mark.slow
def test_epoch_metrics_under_ddp_cover_both_ranks(tmp_path) -> None:
    """Each rank sees half the data; the logged epoch metrics are those of the whole set, on both ranks."""
    from helpers import run_ddp_script

    run_ddp_script(DDP_METRICS_SCRIPT, tmp_path)
    model, train, val = ddp_metrics_case()
    with torch.no_grad():
        expected = {}
        for stage, ds in (("train", train), ("val", val)):
            logits = model(ds.tensors[0])
            expected[f"{stage}/loss"] = torch.nn.functional.cross_entropy(logits, ds.tensors[1]).item()
            expected[f"{stage}/acc"] = (logits.argmax(-1) == ds.tensors[1]).float().mean().item()
    for rank in (0, 1):
        logged = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert {k: logged[k] for k in expected} == pytest.approx(expected, abs=1e-5), rank


def test_a_scheduler_needing_total_steps_on_an_unbounded_run_is_a_config_error_not_an_overflow() -> None:
    import functools

    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_reg.optim import SchedulerSpec

    spec = SchedulerSpec(functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), interval="step")
    model = MLPClassifier(hidden_sizes=[8], scheduler=spec)
    data = DataLoader(TensorDataset(torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))), batch_size=8)
    # max_epochs=-1 and no max_steps: Lightning estimates the run at inf steps, which int() cannot take.
    trainer = pl.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match=r"`scheduler\.scheduler\.total_steps` is required .* run length is unknown"):
        trainer.fit(model, data)
    assert trainer.global_step == 0


def test_keras_adam_resumes_bit_exactly_from_its_state_dict() -> None:
    from lightning_reg.optim import KerasAdam

    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(2, 7, generator=g) * 1e-3 for _ in range(10)]

    def run(steps: range, p: torch.nn.Parameter, opt: KerasAdam) -> None:
        for i in steps:
            p.grad = grads[i].clone()
            opt.step()

    straight = torch.nn.Parameter(torch.ones(2, 7))
    opt = KerasAdam([straight], lr=1e-2, weight_decay=1e-3)
    run(range(10), straight, opt)
    first = torch.nn.Parameter(torch.ones(2, 7))
    opt1 = KerasAdam([first], lr=1e-2, weight_decay=1e-3)
    run(range(5), first, opt1)
    state = opt1.state_dict()
    resumed = torch.nn.Parameter(first.detach().clone())
    opt2 = KerasAdam([resumed], lr=1e-2, weight_decay=1e-3)
    opt2.load_state_dict(state)
    run(range(5, 10), resumed, opt2)
    assert torch.equal(resumed, straight)
