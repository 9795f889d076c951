"""Lightning's own EarlyStopping tests, ported to ``lightning_reg.EarlyStopping`` by switching only the import.

A port, written here, of the behaviour that Lightning 2.6.5's ``tests/tests_pytorch/callbacks/test_early_stopping.py``
pins: the same inputs and the same assertions, test by test, with our own small classification model and data
module in place of Lightning's test helpers (``ClassificationModel``, ``ClassifDataModule``). Three of Lightning's
tests patch its private ``_evaluate_stopping_criteria``, which ours never calls
(``test_min_epochs_min_steps_global_step``, ``test_check_on_train_epoch_end_smart_handling``,
``test_early_stopping_squeezes``); their unmocked twins, with the same inputs and the same public outcome, are in
``test_lightning_es_twins.py``.

``LIGHTNING_REG_PORT_IMPL=lightning`` runs this file against Lightning's own class instead: the control that the
port is faithful (``test_the_port_passes_with_lightnings_own_class`` does that in a subprocess).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import pickle
from unittest import mock
from unittest.mock import Mock

import cloudpickle
import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from sklearn.datasets import make_classification
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_reg._lightning_internals import EarlyStoppingReason

if os.environ.get("LIGHTNING_REG_PORT_IMPL") == "lightning":
    from lightning.pytorch.callbacks import EarlyStopping
else:
    from lightning_reg import EarlyStopping  # the one switched line

_logger = logging.getLogger(__name__)
slow = pytest.mark.slow


# ---------------------------------------------------------------------------- our stand-ins for Lightning's helpers


class ClassifDataModule(pl.LightningDataModule):
    """Three separable classes of 32 features (sklearn), split 70/15/15, batches of 16."""

    def __init__(self, n: int = 400, batch_size: int = 16) -> None:
        super().__init__()
        x, y = make_classification(
            n_samples=n, n_features=32, n_informative=8, n_classes=3, n_clusters_per_class=1, random_state=1234
        )
        data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
        a, b = int(0.7 * n), int(0.85 * n)
        self.parts = [torch.utils.data.Subset(data, range(lo, hi)) for lo, hi in ((0, a), (a, b), (b, n))]
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.parts[0], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.parts[1], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.parts[2], batch_size=self.batch_size)


class ClassificationModel(pl.LightningModule):
    """An MLP classifier logging ``train_loss`` (per step) and ``val_loss``/``val_acc`` (per epoch)."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 3))
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
        self.log("val_acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


# ---------------------------------------------------------------------------- the ported tests


def test_early_stopping_state_key():
    early_stopping = EarlyStopping(monitor="val_loss")
    assert early_stopping.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"


class EarlyStoppingTestRestore(EarlyStopping):
    """Records its state at every training-epoch end; checks a state it was given at the start of training."""

    def __init__(self, expected_state, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expected_state = expected_state
        self.saved_states = []

    def on_train_start(self, trainer, pl_module):
        if self.expected_state:
            assert self.state_dict() == self.expected_state

    def on_train_epoch_end(self, trainer, pl_module):
        super().on_train_epoch_end(trainer, pl_module)
        self.saved_states.append(self.state_dict().copy())


def test_resume_early_stopping_from_checkpoint(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith(("SLURM_", "LOCAL_RANK", "NODE_RANK"))]:
        monkeypatch.delenv(key)
    seed_everything(42)
    model = ClassificationModel()
    dm = ClassifDataModule()
    checkpoint_callback = ModelCheckpoint(dirpath=tmp_path, monitor="train_loss", save_top_k=1)
    early_stop_callback = EarlyStoppingTestRestore(None, monitor="train_loss")
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[early_stop_callback, checkpoint_callback],
        num_sanity_val_steps=0,
        max_epochs=4,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=dm)
    assert len(early_stop_callback.saved_states) == 4

    checkpoint_filepath = checkpoint_callback.kth_best_model_path
    checkpoint = torch.load(checkpoint_filepath, weights_only=True)
    # The checkpoint was written at the end of the epoch it records, after the callback's check.
    early_stop_callback_state = early_stop_callback.saved_states[checkpoint["epoch"]]
    es_name = "EarlyStoppingTestRestore{'monitor': 'train_loss', 'mode': 'min'}"
    assert checkpoint["callbacks"][es_name] == early_stop_callback_state

    # The state comes back on resume (the callback asserts it), then Lightning refuses the too-small max_epochs.
    early_stop_callback = EarlyStoppingTestRestore(early_stop_callback_state, monitor="train_loss")
    new_trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, callbacks=[early_stop_callback])
    with pytest.raises(MisconfigurationException, match=r"You restored a checkpoint with current_epoch"):
        new_trainer.fit(model, datamodule=dm, ckpt_path=checkpoint_filepath)


def test_early_stopping_no_extraneous_invocations(tmp_path):
    model = ClassificationModel()
    dm = ClassifDataModule()
    early_stop_callback = EarlyStopping(monitor="train_loss")
    early_stop_callback._run_early_stopping_check = Mock()
    expected_count = 4
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[early_stop_callback],
        limit_train_batches=4,
        limit_val_batches=4,
        max_epochs=expected_count,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.early_stopping_callback == early_stop_callback
    assert trainer.early_stopping_callbacks == [early_stop_callback]
    assert early_stop_callback._run_early_stopping_check.call_count == expected_count


PATIENCE_CASES = [([6, 5, 5, 5, 5, 5], 3, 4), ([6, 5, 4, 4, 3, 3], 1, 3), ([6, 5, 6, 5, 5, 5], 3, 4)]


@pytest.mark.parametrize(("loss_values", "patience", "expected_stop_epoch"), PATIENCE_CASES)
def test_early_stopping_patience(tmp_path, loss_values, patience, expected_stop_epoch):
    class ModelOverrideValidationReturn(BoringModel):
        validation_return_values = torch.tensor(loss_values)

        def on_validation_epoch_end(self):
            self.log("test_val_loss", self.validation_return_values[self.current_epoch])

    es = EarlyStopping(monitor="test_val_loss", patience=patience, verbose=True)
    trainer = Trainer(
        default_root_dir=tmp_path, callbacks=[es], num_sanity_val_steps=0, max_epochs=10, enable_progress_bar=False
    )
    trainer.fit(ModelOverrideValidationReturn())
    assert trainer.current_epoch - 1 == expected_stop_epoch


@pytest.mark.parametrize("validation_step_none", [True, False])
@pytest.mark.parametrize(("loss_values", "patience", "expected_stop_epoch"), PATIENCE_CASES)
def test_early_stopping_patience_train(tmp_path, validation_step_none, loss_values, patience, expected_stop_epoch):
    class ModelOverrideTrainReturn(BoringModel):
        train_return_values = torch.tensor(loss_values)

        def on_train_epoch_end(self):
            # Logged in the module's own epoch-end hook: the check must come after it.
            self.log("train_loss", self.train_return_values[self.current_epoch])

    model = ModelOverrideTrainReturn()
    if validation_step_none:
        model.validation_step = None
    es = EarlyStopping(monitor="train_loss", patience=patience, verbose=True, check_on_train_epoch_end=True)
    trainer = Trainer(
        default_root_dir=tmp_path, callbacks=[es], num_sanity_val_steps=0, max_epochs=10, enable_progress_bar=False
    )
    trainer.fit(model)
    assert trainer.current_epoch - 1 == expected_stop_epoch


def test_pickling():
    early_stopping = EarlyStopping(monitor="foo")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        early_stopping_loaded = loads(dumps(early_stopping))
        assert vars(early_stopping) == vars(early_stopping_loaded)


def test_early_stopping_no_val_step(tmp_path):
    model = ClassificationModel()
    dm = ClassifDataModule()
    model.validation_step = None
    model.val_dataloader = None
    stopping = EarlyStopping(monitor="train_loss", min_delta=0.1, patience=0, check_on_train_epoch_end=True)
    trainer = Trainer(
        default_root_dir=tmp_path, callbacks=[stopping], overfit_batches=0.20, max_epochs=10, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished, f"Training failed with {trainer.state}"
    assert trainer.current_epoch < trainer.max_epochs - 1


@pytest.mark.parametrize(
    ("stopping_threshold", "divergence_threshold", "losses", "expected_epoch"),
    [
        (None, None, [8, 4, 2, 3, 4, 5, 8, 10], 5),
        (2.9, None, [9, 8, 7, 6, 5, 6, 4, 3, 2, 1], 8),
        (None, 15.9, [9, 4, 2, 16, 32, 64], 3),
    ],
)
def test_early_stopping_thresholds(tmp_path, stopping_threshold, divergence_threshold, losses, expected_epoch):
    class CurrentModel(BoringModel):
        def on_validation_epoch_end(self):
            self.log("abc", losses[self.current_epoch])

    es = EarlyStopping(monitor="abc", stopping_threshold=stopping_threshold, divergence_threshold=divergence_threshold)
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[es],
        limit_train_batches=0.2,
        limit_val_batches=0.2,
        max_epochs=20,
        enable_progress_bar=False,
    )
    trainer.fit(CurrentModel())
    assert trainer.current_epoch - 1 == expected_epoch, "early_stopping failed"


@pytest.mark.parametrize("stop_value", [torch.tensor(torch.inf), torch.tensor(torch.nan)])
def test_early_stopping_on_non_finite_monitor(tmp_path, stop_value):
    losses = [4, 3, stop_value, 2, 1]

    class CurrentModel(BoringModel):
        def on_validation_epoch_end(self):
            self.log("val_loss", losses[self.current_epoch])

    es = EarlyStopping(monitor="val_loss", check_finite=True)
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[es],
        limit_train_batches=0.2,
        limit_val_batches=0.2,
        max_epochs=10,
        enable_progress_bar=False,
    )
    trainer.fit(CurrentModel())
    assert trainer.current_epoch - 1 == 2
    assert es.stopped_epoch == 2


def test_early_stopping_mode_options():
    with pytest.raises(MisconfigurationException, match="`mode` can be .* got unknown_option"):
        EarlyStopping(monitor="foo", mode="unknown_option")


class EarlyStoppingModel(BoringModel):
    """Logs ``abc`` from a fixed loss curve (rank 0 diverging from ``dist_diverge_epoch`` on) and a constant ``cba``."""

    def __init__(self, expected_end_epoch, early_stop_on_train, dist_diverge_epoch=None):
        super().__init__()
        self.expected_end_epoch = expected_end_epoch
        self.early_stop_on_train = early_stop_on_train
        self.dist_diverge_epoch = dist_diverge_epoch

    def _loss(self):
        diverged = (
            self.dist_diverge_epoch and self.current_epoch >= self.dist_diverge_epoch and self.trainer.global_rank == 0
        )
        return 10 if diverged else [8, 4, 2, 3, 4, 5, 8, 10][self.current_epoch]

    def _epoch_end(self):
        self.log("abc", torch.tensor(self._loss()))
        self.log("cba", torch.tensor(0))

    def on_train_epoch_end(self):
        if self.early_stop_on_train:
            self._epoch_end()

    def on_validation_epoch_end(self):
        if not self.early_stop_on_train:
            self._epoch_end()

    def on_train_end(self):
        assert self.trainer.current_epoch - 1 == self.expected_end_epoch, "Early Stopping Failed"


_ON_TRAIN = {"check_on_train_epoch_end": True}
_ON_TRAIN_P3 = {"patience": 3, "check_on_train_epoch_end": True}


@pytest.mark.parametrize(
    ("callbacks", "expected_stop_epoch", "check_on_train_epoch_end", "strategy", "devices", "dist_diverge_epoch"),
    [
        ([EarlyStopping("abc"), EarlyStopping("cba", patience=3)], 3, False, "auto", 1, None),
        ([EarlyStopping("cba", patience=3), EarlyStopping("abc")], 3, False, "auto", 1, None),
        pytest.param([EarlyStopping("abc", patience=1), EarlyStopping("cba")], 2, False, "ddp_spawn", 2, 2, marks=slow),
        pytest.param(
            [EarlyStopping("abc"), EarlyStopping("cba", patience=3)], 3, False, "ddp_spawn", 2, None, marks=slow
        ),
        pytest.param(
            [EarlyStopping("cba", patience=3), EarlyStopping("abc")], 3, False, "ddp_spawn", 2, None, marks=slow
        ),
        ([EarlyStopping("abc", **_ON_TRAIN), EarlyStopping("cba", **_ON_TRAIN_P3)], 3, True, "auto", 1, None),
        ([EarlyStopping("cba", **_ON_TRAIN_P3), EarlyStopping("abc", **_ON_TRAIN)], 3, True, "auto", 1, None),
        pytest.param(
            [EarlyStopping("abc", **_ON_TRAIN), EarlyStopping("cba", **_ON_TRAIN_P3)],
            3,
            True,
            "ddp_spawn",
            2,
            None,
            marks=slow,
        ),
        pytest.param(
            [EarlyStopping("cba", **_ON_TRAIN_P3), EarlyStopping("abc", **_ON_TRAIN)],
            3,
            True,
            "ddp_spawn",
            2,
            None,
            marks=slow,
        ),
    ],
)
def test_multiple_early_stopping_callbacks(
    tmp_path, callbacks, expected_stop_epoch, check_on_train_epoch_end, strategy, devices, dist_diverge_epoch
):
    model = EarlyStoppingModel(expected_stop_epoch, check_on_train_epoch_end, dist_diverge_epoch=dist_diverge_epoch)
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=callbacks,
        limit_train_batches=0.1,
        limit_val_batches=0.1,
        max_epochs=20,
        strategy=strategy,
        accelerator="cpu",
        devices=devices,
        enable_progress_bar=False,
    )
    trainer.fit(model)


@pytest.mark.parametrize(
    ("log_rank_zero_only", "world_size", "global_rank", "expected_log"),
    [
        (False, 1, 0, "bar"),
        (False, 2, 0, "[rank: 0] bar"),
        (False, 2, 1, "[rank: 1] bar"),
        (True, 1, 0, "bar"),
        (True, 2, 0, "[rank: 0] bar"),
        (True, 2, 1, None),
    ],
)
def test_early_stopping_log_info(log_rank_zero_only, world_size, global_rank, expected_log):
    trainer = Mock(global_rank=global_rank, world_size=world_size)
    with mock.patch("lightning.pytorch.callbacks.early_stopping.log.info") as log_mock:
        EarlyStopping._log_info(trainer, "bar", log_rank_zero_only)
    if expected_log:
        log_mock.assert_called_once_with(expected_log)
    else:
        log_mock.assert_not_called()


def _scripted(values, fallback):
    class Scripted(BoringModel):
        def on_validation_epoch_end(self):
            epoch = self.current_epoch
            self.log("val_loss", values[epoch] if epoch < len(values) else fallback)

    return Scripted


@pytest.mark.parametrize(
    ("model_cls", "kwargs", "trainer_kwargs", "expected_reason", "message_part", "should_stop", "state_override"),
    [
        (
            _scripted([10.0], 10.0),
            {"monitor": "val_loss", "patience": 2, "verbose": True},
            {"max_epochs": 10},
            EarlyStoppingReason.PATIENCE_EXHAUSTED,
            "did not improve",
            True,
            None,
        ),
        (
            _scripted([5.0, 3.0, 1.0, 0.5], 0.1),
            {"monitor": "val_loss", "stopping_threshold": 0.6, "mode": "min", "verbose": True},
            {"max_epochs": 10},
            EarlyStoppingReason.STOPPING_THRESHOLD,
            "Stopping threshold reached",
            True,
            None,
        ),
        (
            _scripted([1.0, 2.0, 5.0, 10.0], 15.0),
            {"monitor": "val_loss", "divergence_threshold": 8.0, "mode": "min", "verbose": True},
            {"max_epochs": 10},
            EarlyStoppingReason.DIVERGENCE_THRESHOLD,
            "Divergence threshold reached",
            True,
            None,
        ),
        (
            _scripted([1.0, 0.5, math.nan], math.nan),
            {"monitor": "val_loss", "check_finite": True, "verbose": True},
            {"max_epochs": 10},
            EarlyStoppingReason.NON_FINITE_METRIC,
            "is not finite",
            True,
            None,
        ),
        (
            _scripted([5.0, 4.0, 3.0, 2.0, 1.0], 0.1),
            {"monitor": "val_loss", "patience": 3, "verbose": True},
            {"max_epochs": 3},
            EarlyStoppingReason.NOT_STOPPED,
            None,
            False,
            None,
        ),
        (
            None,
            {"monitor": "val_loss", "patience": 3},
            {},
            EarlyStoppingReason.PATIENCE_EXHAUSTED,
            "Test message",
            None,
            {"stopping_reason": EarlyStoppingReason.PATIENCE_EXHAUSTED, "stopping_reason_message": "Test message"},
        ),
        (
            None,
            {"monitor": "val_loss", "patience": 3},
            {},
            EarlyStoppingReason.NOT_STOPPED,
            None,
            None,
            {"wait_count": 2, "stopped_epoch": 5, "best_score": torch.tensor(0.5), "patience": 3},
        ),
    ],
    ids=["patience", "stopping_threshold", "divergence_threshold", "non_finite", "not_stopped", "state", "old_state"],
)
def test_early_stopping_reasons(
    tmp_path, model_cls, kwargs, trainer_kwargs, expected_reason, message_part, should_stop, state_override
):
    if state_override is not None:
        es = EarlyStopping(**kwargs)
        if "stopping_reason" in state_override:  # the reason survives state_dict -> load_state_dict
            es.stopping_reason = state_override["stopping_reason"]
            es.stopping_reason_message = state_override["stopping_reason_message"]
            loaded = EarlyStopping(**kwargs)
            loaded.load_state_dict(es.state_dict())
            assert loaded.stopping_reason == expected_reason
            assert loaded.stopping_reason_message == message_part
        else:  # a state written before the reason was saved
            es.load_state_dict(copy.deepcopy(state_override))
            assert es.stopping_reason == expected_reason
            assert es.stopping_reason_message is None
            assert es.wait_count == state_override["wait_count"]
            assert es.stopped_epoch == state_override["stopped_epoch"]
        return

    es = EarlyStopping(**kwargs)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[es], enable_progress_bar=False, **trainer_kwargs)
    trainer.fit(model_cls())
    assert es.stopping_reason == expected_reason
    if message_part is not None:
        assert message_part in es.stopping_reason_message
    else:
        assert es.stopping_reason_message is None
    if should_stop is not None:
        assert (es.stopped_epoch > 0) == should_stop
