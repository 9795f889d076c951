"""Where ``lightning_reg.EarlyStopping`` meets Lightning's: the unmocked twins of Lightning's mocking tests,
checkpoints passed between the two classes, checkpoints of our previous version, and the drop-in details.

Each twin runs Lightning's class and ours on the same inputs and compares the public outcome (stop step, epoch,
number of checks), where Lightning's own test patches its private ``_evaluate_stopping_criteria``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_reg import EarlyStopping
from lightning_reg.errors import ConfigError

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parent / "fixtures" / "early_stopping" / "v0_1_patience_gl.ckpt"
QUIET = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}


class LogsBatchIndex(BoringModel):
    def training_step(self, batch, batch_idx):
        self.log("foo", batch_idx)
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("limit_train_batches", "min_epochs", "min_steps", "stop_step"),
    [(3, 0, 10, 10), (5, 0, 10, 10), (3, 2, 0, 6), (5, 2, 0, 10), (3, 1, 10, 10), (5, 1, 10, 10), (3, 3, 10, 10), (5, 3, 10, 15)],
)  # fmt: skip
def test_min_epochs_min_steps_stop_where_lightning_stops(
    tmp_path, limit_train_batches, min_epochs, min_steps, stop_step
):
    # Twin of Lightning's test_min_epochs_min_steps_global_step: a stop due at every check (foo, the epoch mean of
    # the batch index, is always below the threshold) instead of a patched _evaluate_stopping_criteria.
    outcomes = []
    for cls in (LightningEarlyStopping, EarlyStopping):
        trainer = Trainer(
            default_root_dir=tmp_path,
            callbacks=cls("foo", mode="min", stopping_threshold=100.0),
            limit_val_batches=0,
            limit_train_batches=limit_train_batches,
            min_epochs=min_epochs,
            min_steps=min_steps,
            enable_checkpointing=False,
            **QUIET,
        )
        trainer.fit(LogsBatchIndex())
        outcomes.append((trainer.should_stop, trainer.current_epoch, trainer.global_step))
    expected_epochs = max(-(-min_steps // limit_train_batches), min_epochs)
    assert outcomes[0] == (True, expected_epochs, stop_step), "Lightning's own behaviour moved"
    assert outcomes[1] == outcomes[0]


def test_min_epochs_deferral_keeps_reevaluating_where_lightning_latches(tmp_path):
    # Where ours differs on purpose (Lightning #19966): the metric improves between the due stop and min_epochs.
    values = [1.0, 0.9, 0.95, 0.96, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]

    class Scripted(BoringModel):
        def on_validation_epoch_end(self):
            self.log("val_loss", values[self.current_epoch])

    stopped = {}
    for cls in (LightningEarlyStopping, EarlyStopping):
        es = cls("val_loss", patience=2)
        trainer = Trainer(default_root_dir=tmp_path, callbacks=es, min_epochs=5, max_epochs=20, **QUIET)
        trainer.fit(Scripted())
        stopped[cls] = (es.stopped_epoch, trainer.current_epoch)
    assert stopped[LightningEarlyStopping] == (3, 5)
    assert stopped[EarlyStopping] == (6, 7)


@pytest.mark.parametrize(
    "case",
    [
        ("val_check_interval", {"val_check_interval": 0.3, "limit_train_batches": 10, "max_epochs": 10}),
        ("check_val_every_n_epoch", {"check_val_every_n_epoch": 2, "max_epochs": 5}),
    ],
    ids=lambda c: c[0],
)
def test_check_after_validation_when_it_runs_other_than_once_per_epoch(tmp_path, case):
    # Twin of Lightning's test_check_on_train_epoch_end_smart_handling: the first check does not stop, the second
    # does (the logged value crosses the stopping threshold), as its patched criteria answered (False, True).
    name, kwargs = case

    class TwoChecks(BoringModel):
        checks = 0

        def on_validation_epoch_end(self):
            if not self.trainer.sanity_checking:
                self.checks += 1
                self.log("foo", 1.0 if self.checks == 1 else 0.0)

    outcomes = []
    for cls in (LightningEarlyStopping, EarlyStopping):
        model = TwoChecks()
        es = cls("foo", mode="min", stopping_threshold=0.5)
        trainer = Trainer(default_root_dir=tmp_path, limit_val_batches=1, callbacks=es, **QUIET, **kwargs)
        trainer.fit(model)
        outcomes.append((model.checks, trainer.global_step, trainer.current_epoch))
        if name == "val_check_interval":
            assert trainer.global_step == 2 * int(trainer.limit_train_batches * trainer.val_check_interval)
        else:
            assert trainer.current_epoch == 2 * trainer.check_val_every_n_epoch
    assert outcomes[0] == outcomes[1] and outcomes[1][0] == 2
    assert len(es.history) == 2, "ours checked at each validation, not at each training-epoch end"


def test_a_check_outside_a_fit_squeezes_the_value_and_writes_nothing(tmp_path, monkeypatch):
    # Twin of Lightning's test_early_stopping_squeezes: the check called by hand on a bare Trainer.
    monkeypatch.chdir(tmp_path)
    for cls in (LightningEarlyStopping, EarlyStopping):
        es = cls(monitor="foo", mode="min")
        trainer = Trainer()
        trainer.callback_metrics["foo"] = torch.tensor([[[0]]])
        es._run_early_stopping_check(trainer)
        assert float(es.best_score) == 0.0 and not trainer.should_stop
    assert es.history == [0.0]
    assert list(tmp_path.iterdir()) == [], "no lightning_logs/ or anything else"


# ---------------------------------------------------------------------------- checkpoints between the classes


class Scripted(BoringModel):
    VALUES = [1.0, 0.8, 0.9, 0.85, 0.95, 0.97, 0.99, 1.0, 1.0, 1.0]

    def on_validation_epoch_end(self):
        self.log("val_loss", self.VALUES[self.current_epoch])


def _fit(tmp_path: Path, es, max_epochs: int, ckpt_path: Path | None = None) -> Trainer:
    trainer = Trainer(
        default_root_dir=tmp_path,
        callbacks=[es, ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)],
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        **QUIET,
    )
    trainer.fit(Scripted(), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize(
    ("first", "then"), [(LightningEarlyStopping, EarlyStopping), (EarlyStopping, LightningEarlyStopping)]
)
def test_a_checkpoint_resumes_into_the_other_class_with_its_patience_count(tmp_path, first, then):
    # Uninterrupted, patience 3 stops at epoch 4 (best 0.8 at epoch 1). Cut after epoch 2 (wait 1), resume in the
    # other class: it must stop at epoch 4 too, not start its patience over (which would stop at epoch 5).
    _fit(tmp_path, first("val_loss", patience=3), max_epochs=3)
    resumed = then("val_loss", patience=3)
    trainer = _fit(tmp_path, resumed, max_epochs=10, ckpt_path=tmp_path / "ck" / "last.ckpt")
    assert (resumed.stopped_epoch, trainer.current_epoch) == (4, 5)
    assert float(resumed.best_score) == pytest.approx(0.8)


def test_a_checkpoint_of_the_previous_version_resumes_with_its_state_and_best_weights(tmp_path):
    # Written by lightning_reg before EarlyStopping became its own callback (tests/fixtures/early_stopping):
    # patience 3 and GL, both with restore_best_weights, cut after 6 epochs with the best at epoch 4, wait 1.
    from test_early_stopping import RESUME_VALUES, fit, scripted

    old = torch.load(FIXTURE, weights_only=True)["callbacks"]
    old_patience = next(v for k, v in old.items() if "'criterion': 'patience'" in k)
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    gl = EarlyStopping("val/score", criterion="GL", alpha=50, log_prefix="es_gl/", restore_best_weights=True)
    module = scripted(RESUME_VALUES)
    fit(module, es, gl, ModelCheckpoint(dirpath=tmp_path, save_last=True), ckpt_path=FIXTURE)
    assert es.history[:6] == pytest.approx(old_patience["history"]) and es.check_epochs[:6] == list(range(6))
    assert (es.stop_reason, es.stopped_epoch, es.best_epoch) == ("patience", 7, 4), "wait 1 carried over, not reset"
    assert gl.history == es.history
    assert es.restorer is gl.restorer, "one restorer for the two stoppers on one metric"
    assert es.restorer.restored_epoch == 4
    for name, tensor in module.state_dict().items():  # the best weights came from the old file
        assert torch.equal(tensor, old_patience["best_weights"][name]), name


# ---------------------------------------------------------------------------- drop-in details


def test_bad_arguments_are_misconfiguration_exceptions_and_config_errors():
    for build in (
        lambda: EarlyStopping("val_loss", mode="sideways"),
        lambda: EarlyStopping("val_loss", patience=-1),
        lambda: EarlyStopping("val_loss", criterion="GL"),
    ):
        with pytest.raises(MisconfigurationException) as info:
            build()
        assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)


def test_mode_is_refused_only_against_an_exact_known_name():
    assert EarlyStopping("val/1-acc", mode="min").mode == "min"  # an error rate: "acc" is only a piece of it
    assert EarlyStopping("val_r2_score").mode == "max"
    with pytest.raises(ConfigError, match=r"`mode` must be 'min' for monitor 'val/loss'"):
        EarlyStopping("val/loss", mode="max")
    with pytest.warns(UserWarning, match=r"'abc' is not a metric whose direction is known.*Give mode='min'"):
        assert EarlyStopping("abc").mode == "min"


def test_negative_min_delta_keeps_lightnings_meaning(tmp_path):
    # A value up to 0.01 worse than the best still counts as an improvement, so the wait resets.
    values = [1.0, 0.9, 0.905, 0.91, 0.915, 0.95, 0.96, 0.97, 0.98, 0.99]

    class Drift(BoringModel):
        def on_validation_epoch_end(self):
            self.log("val_loss", values[self.current_epoch])

    stops = []
    for cls in (LightningEarlyStopping, EarlyStopping):
        es = cls("val_loss", patience=2, min_delta=-0.01)
        Trainer(default_root_dir=tmp_path, callbacks=es, max_epochs=10, limit_train_batches=1, **QUIET).fit(Drift())
        stops.append(es.stopped_epoch)
    assert stops == [6, 6]


@pytest.mark.slow
def test_the_port_passes_with_lightnings_own_class():
    """The control: tests/callbacks/test_lightning_es_port.py with Lightning's class in place of ours."""
    env = {**os.environ, "LIGHTNING_REG_PORT_IMPL": "lightning"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-W", "ignore",
         str(HERE / "test_lightning_es_port.py")],
        env=env, capture_output=True, text=True, timeout=600, cwd=HERE.parent.parent,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert "37 passed" in result.stdout


def test_the_resolved_mode_is_said_once_per_fit(caplog, tmp_path):
    class Logs(BoringModel):
        def on_validation_epoch_end(self):
            self.log("val_acc", 0.5)

    with caplog.at_level("INFO"):
        trainer = Trainer(default_root_dir=tmp_path, callbacks=EarlyStopping("val_acc"), max_epochs=2, **QUIET)
        trainer.fit(Logs())
    said = [r.getMessage() for r in caplog.records if "EarlyStopping: val_acc is" in r.getMessage()]
    assert said == ["EarlyStopping: val_acc is maximized (mode 'max': auto, a known metric)."]
