"""RestoreBestWeights beside any stopper; PenalizedLoss (Keras' val_loss); a new criterion as one class plus one yaml."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf
from test_early_stopping import StopAt, assert_weights_equal, fit, scripted
from typing_extensions import override

from lightning_reg import PenalizedLoss, RestoreBestWeights, WeightPenalty
from lightning_reg.core import criterion
from lightning_reg.core.stopping import CRITERIA, Criterion, criterion_class
from lightning_reg.errors import ConfigError

from helpers import TinyModule, loaders

VALUES = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7, 0.75, 0.8, 0.85]


def test_restores_beside_lightnings_early_stopping():
    module = scripted(VALUES)
    restore = RestoreBestWeights("val/score", mode="min")
    trainer = fit(module, LightningEarlyStopping("val/score", patience=3), restore)
    assert trainer.current_epoch == 6 and restore.restored_epoch == 2
    assert_weights_equal(module, module.snapshots[2])


def test_follows_the_trainers_stopper_when_no_monitor_is_given():
    module = scripted(VALUES)
    restore = RestoreBestWeights()
    fit(module, LightningEarlyStopping("val/score", patience=3, mode="min"), restore)
    assert (restore.monitor, restore.mode, restore.restored_epoch) == ("val/score", "min", 2)
    with pytest.raises(ConfigError, match=r"follows the trainer's EarlyStopping callback, and there is none"):
        fit(scripted(VALUES), RestoreBestWeights())


@pytest.mark.parametrize("stopper", ["max_epochs", "another_callback"])
def test_restores_however_training_ended(stopper):
    module = scripted(VALUES)
    restore = RestoreBestWeights("val/score", mode="min", start_from_epoch=3)
    extra = [StopAt(6)] if stopper == "another_callback" else []
    trainer = fit(module, restore, *extra, max_epochs=8)
    assert trainer.current_epoch == (7 if extra else 8)
    assert restore.restored_epoch == 5, "epochs before start_from_epoch are never restored"
    assert_weights_equal(module, module.snapshots[5])


def test_restore_from_checkpoint_and_its_check_before_training(tmp_path: Path):
    module = scripted(VALUES)
    restore = RestoreBestWeights("val/score", mode="min", source="checkpoint")
    fit(module, restore, ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min"), max_epochs=6)
    assert restore.best_weights is None and restore.restored_epoch == 2
    assert_weights_equal(module, module.snapshots[2])
    with pytest.raises(ConfigError, match=r"needs a ModelCheckpoint with monitor='val/score'"):
        fit(scripted(VALUES), RestoreBestWeights("val/score", source="checkpoint"))


def test_bad_arguments_name_the_option():
    for kwargs, match in (
        ({"monitor": ""}, r"`monitor` must be"),
        ({"monitor": "val/loss", "mode": "max"}, r"`mode` must be 'min' for monitor 'val/loss'"),
        ({"monitor": "val/loss", "source": "disk"}, r"`source` must be one of 'memory', 'checkpoint'; got 'disk'"),
        ({"monitor": "val/loss", "start_from_epoch": -1}, r"`start_from_epoch` must be an integer in \[0, inf\]"),
    ):
        with pytest.raises(ConfigError, match=match):
            RestoreBestWeights(**kwargs)


# ---------------------------------------------------------------------------- Keras' val_loss


def test_penalized_loss_is_the_validation_loss_plus_the_penalty_at_the_evaluated_weights():
    train, val = loaders(n=64, batch_size=16)
    module = TinyModule()
    penalized = PenalizedLoss("val/loss")
    trainer = fit(module, WeightPenalty(l2=1e-2), penalized, data=lambda: (train, val), max_epochs=2)
    by_hand = 1e-2 * sum(float((m.weight**2).sum()) for m in module.modules() if isinstance(m, torch.nn.Linear))
    logged = trainer.callback_metrics
    assert float(logged["val/loss_penalized"]) == pytest.approx(float(logged["val/loss"]) + by_hand, rel=1e-5)
    assert by_hand > 1e-3, "the penalty must be large enough to be told apart"


def test_penalized_loss_names_what_validation_logs():
    with pytest.raises(ConfigError, match=r"`metric` is 'val/los', which validation does not log; logged: .*val/loss"):
        fit(TinyModule(), PenalizedLoss("val/los"), data=lambda: loaders(n=64, batch_size=16), max_epochs=1)


# ---------------------------------------------------------------------------- a new criterion: one class, one yaml


@pytest.fixture
def plateau():
    """A criterion defined the way a user defines one; registered while the test runs, then removed again."""

    class Plateau(Criterion):
        """Stops when the last ``k`` values lie within ``width`` of each other."""

        name = "plateau_test"
        options = ("k", "width")

        def __init__(self, k: int = 3, width: float = 0.01, **shared):
            self.k, self.width = k, width
            super().__init__(**shared)

        @override
        def fires(self) -> bool:
            last = self.history[-self.k :]
            return len(last) == self.k and max(last) - min(last) <= self.width

        @override
        def _message(self) -> str:
            return f"{self.monitor} stayed within {self.width} for {self.k} checks."

    globals()["Plateau"] = Plateau  # where the yaml's _target_ finds it
    yield Plateau
    del globals()["Plateau"]
    del criterion._REGISTRY[Plateau.name]  # the registry lives with the Criterion base


YAML = """
_target_: lightning_reg.EarlyStopping
monitor: val/score
mode: min
patience: 50
log_prefix: es_plateau/
criterion:
  _target_: test_restore_best_weights.Plateau
  k: 3
  width: 0.02
"""


def test_a_new_criterion_is_one_class_plus_one_yaml(plateau):
    assert CRITERIA["plateau_test"] is plateau and criterion_class("PLATEAU_TEST") is plateau
    es = instantiate(OmegaConf.create(YAML))
    assert isinstance(es.rule, plateau) and es.rule.patience == 50
    assert (
        es.state_key
        == "EarlyStopping{'monitor': 'val/score', 'mode': 'min', 'criterion': 'plateau_test', 'k': 3, 'width': 0.02, 'log_prefix': 'es_plateau/'}"
    )
    values = [1.0, 0.8, 0.7, 0.69, 0.695, 0.7, 0.5]
    fit(scripted(values), es)
    assert (es.stop_reason, es.stopped_epoch) == ("plateau_test", 4)
    assert es.stopping_reason_message.startswith("val/score stayed within 0.02 for 3 checks.")
    assert not math.isnan(es.run_summary()["best_score"])


@pytest.mark.parametrize(("kwargs", "match"), [({"metric": ""}, r"`metric` must be a logged metric's name; got ''"),
                                               ({"name": 3}, r"`name` must be a logged metric's name; got 3")])  # fmt: skip
def test_penalized_loss_bad_arguments_name_the_option(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PenalizedLoss(**kwargs)
