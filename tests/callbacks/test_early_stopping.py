"""EarlyStopping on real Trainers: a module logs a scripted validation value per epoch, we pin the stop epoch.

The module also trains a small linear layer on real data, so its weights change every epoch and
"restored the best weights" can be checked exactly against a snapshot taken at that epoch's check.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_reg import EarlyStopping
from lightning_reg._lightning_internals import EarlyStoppingReason, weights_only_kwargs
from lightning_reg.errors import ConfigError

from helpers import MemoryLogger
from helpers import fit as shared_fit

NAN = float("nan")


class ScriptedModule(pl.LightningModule):
    """Logs ``val_values[epoch]`` as ``monitor`` (and ``train_values[epoch]`` as ``train/scripted``).

    ``rank_values`` (rank -> sequence) lets a DDP test give each rank its own, unsynced sequence.
    ``snapshots[epoch]`` holds the weights at that epoch's validation check.
    """

    def __init__(
        self,
        val_values,
        train_values=None,
        monitor: str = "val/score",
        manual: bool = False,
        rank_values: dict | None = None,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.val_values = list(val_values)
        self.train_values = list(train_values) if train_values is not None else None
        self.monitor = monitor
        self.rank_values = rank_values
        self.automatic_optimization = not manual
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def _values(self):
        if self.rank_values is not None:
            return self.rank_values[self.global_rank]
        return self.val_values

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        if self.train_values is not None:
            self.log("train/scripted", float(self.train_values[self.current_epoch]), on_step=False, on_epoch=True)
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return None
        return loss

    def validation_step(self, batch, batch_idx):
        self.log(self.monitor, float(self._values()[self.current_epoch]), batch_size=len(batch[0]))

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.snapshots[self.current_epoch] = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def make_loaders(n: int = 32, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=16)


# fit(module, *callbacks, max_epochs=..., ckpt_path=..., **trainer_kw) -> Trainer, on this file's scripted data.
fit = partial(shared_fit, data=make_loaders, max_epochs=20)


def scripted(values, **kw) -> ScriptedModule:
    pl.seed_everything(0)
    return ScriptedModule(values, **kw)


def assert_weights_equal(module: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert got.keys() == expected.keys()
    for k in got:
        assert torch.equal(got[k], expected[k]), k


def assert_stopped_at(trainer: pl.Trainer, es: EarlyStopping, epoch: int, reason: str) -> None:
    assert (es.stop_reason, es.stopped_epoch) == (reason, epoch)
    assert trainer.current_epoch == epoch + 1, "training must end right after the stopping epoch"


# ---------------------------------------------------------------------------- stop epochs per rule


def test_patience_stops_where_lightning_does():
    values = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.9, 0.9, 0.9]
    ours = EarlyStopping("val/score", patience=3)
    trainer = fit(scripted(values), ours)
    assert_stopped_at(trainer, ours, 5, "patience")
    assert ours.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert (ours.best_epoch, ours.best_value) == (2, pytest.approx(0.7))

    theirs = LightningEarlyStopping("val/score", patience=3)
    trainer = fit(scripted(values), theirs)
    assert (theirs.stopped_epoch, trainer.current_epoch) == (5, 6)


def test_min_delta_and_auto_mode_for_accuracy():
    # Maximized (auto from "acc"); +0.005 is not an improvement with min_delta=0.01.
    values = [0.5, 0.6, 0.605, 0.609, 0.62, 0.62, 0.62, 0.62]
    es = EarlyStopping("val/acc", mode="auto", min_delta=0.01, patience=2)
    trainer = fit(scripted(values, monitor="val/acc"), es)
    assert es.mode == "max"
    assert_stopped_at(trainer, es, 3, "patience")
    assert es.best_epoch == 1


def test_start_from_epoch_neither_counts_nor_tracks_the_warmup():
    values = [1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    plain = EarlyStopping("val/score", patience=2)
    assert_stopped_at(fit(scripted(values), plain), plain, 3, "patience")

    # As in Keras: epochs 0-3 are not looked at, so epoch 4 is the first (and best) check.
    warm = EarlyStopping("val/score", patience=2, start_from_epoch=4)
    trainer = fit(scripted(values), warm)
    assert_stopped_at(trainer, warm, 6, "patience")
    assert (warm.best_epoch, warm.best_value, warm.history) == (4, pytest.approx(0.6), pytest.approx([0.6] * 3))


def test_stop_due_before_min_epochs_is_reevaluated_not_forced(caplog):
    # patience runs out at epoch 3, the metric improves at epoch 4, min_epochs=5.
    values = [1.0, 0.9, 0.95, 0.96, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9]
    ours = EarlyStopping("val/score", patience=2, verbose=True)
    with caplog.at_level("INFO", logger="lightning.pytorch.callbacks.early_stopping"):
        trainer = fit(scripted(values), ours, min_epochs=5)
    assert "Stop due at epoch 3 (patience) deferred: min_epochs=5" in caplog.text
    assert "did not improve in the last 2 checks" in caplog.text
    assert ours.deferred_epochs == [3]
    assert_stopped_at(trainer, ours, 6, "patience")  # two checks after the epoch-4 improvement
    assert ours.best_epoch == 4

    # Lightning's callback latches should_stop at epoch 3 and stops at min_epochs although epoch 4 improved
    # (Lightning #19966). If this starts failing, Lightning fixed it: update docs/early_stopping.md.
    theirs = LightningEarlyStopping("val/score", patience=2)
    trainer = fit(scripted(values), theirs, min_epochs=5)
    assert (theirs.stopped_epoch, trainer.current_epoch) == (3, 5)


def test_stop_due_before_min_epochs_happens_at_min_epochs_when_still_due():
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.0]
    es = EarlyStopping("val/score", patience=2)
    trainer = fit(scripted(values), es, min_epochs=6)
    assert es.deferred_epochs == [3, 4]
    assert_stopped_at(trainer, es, 5, "patience")


def test_baseline_deadline_stops_even_while_improving():
    # Our earlier rule, kept as an option: the baseline must be beaten within `patience` checks.
    values = [1.0, 0.9, 0.8, 0.7, 0.6, 0.55, 0.4, 0.3]
    es = EarlyStopping("val/score", patience=3, baseline=0.5, baseline_deadline=True)
    trainer = fit(scripted(values), es)
    assert_stopped_at(trainer, es, 2, "baseline")
    assert es.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED


def test_baseline_beaten_then_plain_patience():
    values = [1.0, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5]
    es = EarlyStopping("val/score", patience=3, baseline=0.5)
    assert_stopped_at(fit(scripted(values), es), es, 4, "patience")


def test_baseline_applies_to_prechelt_criteria_too():
    values = [1.0, 0.9, 0.8, 0.7, 0.6]
    es = EarlyStopping("val/score", criterion="GL", alpha=5, patience=2, baseline=0.1, baseline_deadline=True)
    assert_stopped_at(fit(scripted(values), es), es, 1, "baseline")


def test_gl_stops_when_generalization_loss_exceeds_alpha():
    # GL: e3 100*(0.72/0.7-1)=2.86, e4 5.71 > 5.
    values = [1.0, 0.8, 0.7, 0.72, 0.74, 0.76, 0.78, 0.8]
    es = EarlyStopping("val/score", criterion="GL", alpha=5)
    trainer = fit(scripted(values), es)
    assert_stopped_at(trainer, es, 4, "GL")
    assert es.last_gl == pytest.approx(100 * (0.74 / 0.7 - 1), rel=1e-5)


def test_pq_stops_only_at_strip_ends_when_quotient_exceeds_alpha():
    values = [1.0, 0.8, 0.7, 0.72, 0.71, 0.73, 0.75, 0.77, 0.8, 0.8, 0.8, 0.8]
    train = [1.0, 0.9, 0.8, 0.75, 0.7, 0.65, 0.64, 0.635, 0.63, 0.63, 0.63, 0.63]
    # strip ends at epochs 2, 5, 8: PQ = 0, 4.29/76.9 = 0.056, 14.29/7.94 = 1.8
    es = EarlyStopping("val/score", criterion="PQ", alpha=0.5, strip=3, train_monitor="train/scripted")
    trainer = fit(scripted(values, train_values=train), es)
    assert_stopped_at(trainer, es, 8, "PQ")


def test_up_stops_after_s_successive_worse_strips():
    values = [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.78, 0.8, 0.85, 0.9, 0.95, 1.0]
    # strip ends (k=2) at epochs 1,3,5,7,9: 0.9, 0.85, 0.75, 0.8, 0.9 -> worse at 7 and 9.
    es = EarlyStopping("val/score", criterion="UP", s=2, strip=2)
    assert_stopped_at(fit(scripted(values), es), es, 9, "UP")
    es1 = EarlyStopping("val/score", criterion="up", s=1, strip=2)
    assert_stopped_at(fit(scripted(values), es1), es1, 7, "UP")


def test_stopping_and_divergence_thresholds_still_work():
    values = [1.0, 0.8, 0.4, 0.3, 0.2]
    es = EarlyStopping("val/score", stopping_threshold=0.5, patience=10)
    assert_stopped_at(fit(scripted(values), es), es, 2, "stopping_threshold")
    assert es.best_epoch == 2  # the threshold-reaching check is the best one
    values = [1.0, 0.8, 3.0, 0.3]
    es = EarlyStopping("val/score", divergence_threshold=2.0, patience=10)
    assert_stopped_at(fit(scripted(values), es), es, 2, "divergence_threshold")


def test_nan_monitor_stops_cleanly_and_restores_best():
    values = [1.0, 0.8, 0.9, NAN, 0.5, 0.4]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=5, restore_best_weights=True)
    trainer = fit(module, es)
    assert_stopped_at(trainer, es, 3, "non_finite")
    assert es.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC
    assert "not finite" in es.stopping_reason_message
    assert_weights_equal(module, module.snapshots[1])
    summary = es.run_summary()
    assert (summary["reason"], summary["stopped_epoch"], summary["restored_epoch"]) == ("non_finite", 3, 1)


# ---------------------------------------------------------------------------- restore best weights


def test_restore_after_early_stop():
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    fit(module, es)
    assert es.stopped_epoch == 5
    assert not torch.equal(module.snapshots[2]["net.0.weight"], module.snapshots[5]["net.0.weight"])
    assert_weights_equal(module, module.snapshots[2])
    assert es.run_summary()["ended_by"] == "early_stopping"


def test_restore_when_max_epochs_ends_training():
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=10, restore_best_weights=True)
    fit(module, es, max_epochs=6)
    assert es.stop_reason is None and es.run_summary()["ended_by"] == "limit"
    assert_weights_equal(module, module.snapshots[2])


class StopAt(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def test_restore_when_another_callback_stops_training():
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.5]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=10, restore_best_weights=True)
    trainer = fit(module, es, StopAt(4))
    assert trainer.current_epoch == 5 and es.stop_reason is None
    assert es.run_summary()["ended_by"] == "should_stop"
    assert_weights_equal(module, module.snapshots[2])


def test_restore_without_option_keeps_final_weights():
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    module = scripted(values)
    fit(module, EarlyStopping("val/score", patience=3))
    assert torch.equal(module.state_dict()["net.0.weight"], module.snapshots[5]["net.0.weight"])


def test_restore_from_model_checkpoint(tmp_path: Path):
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True, restore_from="checkpoint")
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min")
    fit(module, es, ckpt)
    assert es.restorer is not None and es.restorer.best_weights is None, "checkpoint mode keeps no copy in memory"
    assert es.restorer.restored_epoch == es.run_summary()["restored_epoch"] == 2
    assert_weights_equal(module, module.snapshots[2])


def test_restore_from_checkpoint_needs_matching_model_checkpoint(tmp_path: Path):
    es = EarlyStopping("val/score", restore_best_weights=True, restore_from="checkpoint")
    module = scripted([1.0] * 3)
    with pytest.raises(ConfigError, match=r"restore_from='checkpoint'.*monitor='val/acc'"):
        fit(module, es, ModelCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max"))
    assert module.snapshots == {}, "the error must come before any training"


# ---------------------------------------------------------------------------- resume

RESUME_VALUES = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79, 0.8, 0.81]


def _resume_pair(tmp_path: Path, make_es, cut: int):
    full_module = scripted(RESUME_VALUES)
    full_es = make_es()
    full = fit(full_module, full_es)

    first_es = make_es()
    fit(scripted(RESUME_VALUES), first_es, ModelCheckpoint(dirpath=tmp_path, save_last=True), max_epochs=cut)
    resumed_module = scripted(RESUME_VALUES)
    resumed_es = make_es()
    resumed = fit(
        resumed_module,
        resumed_es,
        ModelCheckpoint(dirpath=tmp_path / "b", save_last=True),
        ckpt_path=tmp_path / "last.ckpt",
    )
    return (full, full_module, full_es), (resumed, resumed_module, resumed_es), first_es


def test_resume_mid_patience_stops_at_the_same_epoch_and_restores(tmp_path: Path):
    def make_es():
        return EarlyStopping("val/score", patience=3, restore_best_weights=True)

    (full, full_module, full_es), (resumed, resumed_module, resumed_es), first_es = _resume_pair(tmp_path, make_es, 6)
    assert first_es.wait_count == 1 and first_es.stop_reason is None, "the cut must fall mid-patience"
    assert full_es.stopped_epoch == resumed_es.stopped_epoch == 7
    assert full.current_epoch == resumed.current_epoch == 8
    assert resumed_es.history == full_es.history and resumed_es.best_epoch == 4
    # Best epoch 4 came before the cut: its weights came back from the checkpoint's callback state.
    assert_weights_equal(full_module, full_module.snapshots[4])
    assert_weights_equal(resumed_module, full_module.state_dict())


def test_checkpoint_state_loads_with_weights_only(tmp_path: Path):
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    gl = EarlyStopping("val/score", criterion="GL", alpha=50, log_prefix="es_gl/")
    fit(scripted(RESUME_VALUES), es, gl, ModelCheckpoint(dirpath=tmp_path, save_last=True), max_epochs=3)
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert es.state_key != gl.state_key
    state = ckpt["callbacks"][es.state_key]
    assert state["history"] == pytest.approx([1.0, 0.8, 0.9]) and state["best_epoch"] == 1 and state["wait_count"] == 1
    assert "best_weights" not in state and "best_weights" not in ckpt["callbacks"][gl.state_key]
    restored = ckpt["callbacks"][es.restorer.state_key]  # the RestoreBestWeights that es added
    assert set(restored["best_weights"]) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    assert restored["best_epoch"] == 1

    es2 = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    gl2 = EarlyStopping("val/score", criterion="GL", alpha=50, log_prefix="es_gl/")
    fit(
        scripted(RESUME_VALUES),
        es2,
        gl2,
        ModelCheckpoint(dirpath=tmp_path, save_last=True),
        max_epochs=4,
        ckpt_path=tmp_path / "last.ckpt",
    )
    assert es2.history == pytest.approx(RESUME_VALUES[:4]) and gl2.history == es2.history


def test_testing_a_checkpoint_does_not_rewind_the_fit_record(tmp_path: Path):
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor="val/score", mode="min")
    module = scripted(values)
    trainer = fit(module, es, ckpt)
    before = es.run_summary()
    assert before["stopped_epoch"] == 5
    _, val = make_loaders()
    module.test_step = module.validation_step
    trainer.test(module, val, ckpt_path=ckpt.best_model_path, **weights_only_kwargs(False))
    assert es.run_summary() == before


def test_load_state_dict_accepts_lightning_style_state():
    es = EarlyStopping("val/score", patience=3)
    es.load_state_dict({"wait_count": 2, "stopped_epoch": 0, "best_score": torch.tensor(0.5), "patience": 3})
    assert (es.wait_count, es.best_value, es.history) == (2, 0.5, [])


# ---------------------------------------------------------------------------- precision, accumulation, manual


@pytest.mark.parametrize("kw", [{"precision": "bf16-mixed"}, {"accumulate_grad_batches": 2}], ids=["bf16", "accum"])
def test_runs_with_bf16_and_accumulation(kw):
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    module = scripted(values)
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    fit(module, es, **kw)
    assert es.stopped_epoch == 5
    assert_weights_equal(module, module.snapshots[2])


def test_runs_with_manual_optimization():
    values = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7]
    module = scripted(values, manual=True)
    es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
    fit(module, es)
    assert es.stopped_epoch == 5
    assert_weights_equal(module, module.snapshots[2])


# ---------------------------------------------------------------------------- logging


@pytest.mark.parametrize("on_train_epoch_end", [True, False])
def test_logs_wait_count_and_generalization_loss(on_train_epoch_end):
    values = [1.0, 0.8, 0.88, 1.0, 1.2, 1.2]
    lg = MemoryLogger()
    es = EarlyStopping("val/score", patience=3, check_on_train_epoch_end=on_train_epoch_end)
    fit(scripted(values), es, logger=lg)
    waits = [v for _, v in lg.series("es/wait")]
    gls = [v for _, v in lg.series("es/gl")]
    assert waits == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert gls == pytest.approx([0.0, 0.0, 10.0, 25.0, 50.0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patience": -1}, r"`patience` must be an integer in \[0, inf\]; got -1"),
        ({"criterion": "GL", "alpha": 0}, r"`alpha` must be in \(0.0, inf\]; got 0"),
        ({"criterion": "PQ", "alpha": -1.0, "train_monitor": "train/loss"}, r"`alpha` must be in \(0.0"),
        ({"criterion": "GL"}, r"`alpha` must be a number > 0 for criterion 'GL'; got None"),
        ({"criterion": "PQ", "alpha": 0.5}, r"`train_monitor` must name the logged training loss"),
        ({"criterion": "UP"}, r"`s` .* for criterion 'UP'; got None"),
        ({"criterion": "UP", "s": 0}, r"`s` must be an integer in \[1, inf\]; got 0"),
        ({"criterion": "UP", "s": 2, "strip": 0}, r"`strip` must be an integer in \[1, inf\]; got 0"),
        ({"criterion": "slope"}, r"`criterion` must be one of 'patience', 'GL', 'PQ', 'UP'; got 'slope'"),
        ({"mode": "maximize"}, r"`mode` can be 'min', 'max' or 'auto', got maximize"),
        ({"start_from_epoch": -2}, r"`start_from_epoch` must be an integer in \[0, inf\]"),
        ({"restore_from": "disk"}, r"`restore_from` must be one of 'memory', 'checkpoint'; got 'disk'"),
        ({"min_delta": "0.1"}, r"`min_delta` must be a number"),
    ],
)
def test_bad_arguments_are_rejected_in_init(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EarlyStopping("val/score", **kwargs)


def test_unknown_monitor_error_lists_logged_metrics():
    es = EarlyStopping("val/scroe", patience=2)
    with pytest.raises(RuntimeError, match=r"'val/scroe'.*Logged metrics: `train/loss`, `val/score`") as info:
        fit(scripted([1.0, 0.9]), es)
    assert isinstance(info.value, ConfigError)


def test_pq_missing_train_monitor_at_check_lists_logged_metrics():
    es = EarlyStopping("val/score", criterion="PQ", alpha=0.5, train_monitor="train/los")
    with pytest.raises(RuntimeError, match=r"`train_monitor` is 'train/los'.*`train/loss`"):
        fit(scripted([1.0, 0.9]), es)


def test_gl_needs_positive_values():
    es = EarlyStopping("val/score", criterion="GL", alpha=5)
    with pytest.raises(ConfigError, match=r"needs a positive monitored value"):
        fit(scripted([1.0, -0.5]), es)


def test_non_strict_missing_monitor_is_skipped():
    es = EarlyStopping("val/nothing", patience=1, strict=False)
    trainer = fit(scripted([1.0, 0.9, 0.95]), es, max_epochs=3)
    assert trainer.current_epoch == 3 and es.history == []


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("val/acc", "max"),
        ("val_accuracy", "max"),
        ("val/auc", "max"),
        ("val-f1", "max"),
        ("val/precision", "max"),
        ("val/recall", "max"),
        ("val/loss", "min"),
        ("val/err", "min"),
        ("val/accent_loss", "min"),
    ],
)
def test_auto_mode_inference(monitor, mode):
    assert EarlyStopping(monitor, mode="auto").mode == mode


def test_state_keys_differ_per_config():
    keys = {
        EarlyStopping("val/acc", mode="max", patience=2).state_key,
        EarlyStopping("val/loss", criterion="GL", alpha=2).state_key,
        EarlyStopping("val/loss", criterion="GL", alpha=3).state_key,
        EarlyStopping("val/loss", criterion="PQ", alpha=2, train_monitor="train/loss").state_key,
        EarlyStopping("val/loss", criterion="UP", s=2).state_key,
    }
    assert len(keys) == 5
    # The patience rule keeps Lightning's key: the patience itself is not part of it, as in Lightning.
    assert EarlyStopping("val/acc", patience=2).state_key == EarlyStopping("val/acc", patience=5).state_key


def test_run_summary_is_plain_and_json_ready():
    import json

    es = EarlyStopping("val/score", patience=2)
    fit(scripted([1.0, 0.8, 0.9, 0.95, 1.0]), es)
    summary = es.run_summary()
    assert json.loads(json.dumps(summary)) == summary
    assert {k: summary[k] for k in ("stopped", "stopped_epoch", "reason", "best_epoch", "best_score", "checks")} == {
        "stopped": True,
        "stopped_epoch": 3,
        "reason": "patience",
        "best_epoch": 1,
        "best_score": pytest.approx(0.8),
        "checks": 4,
    }
    assert summary["stopping_reason"] == "PATIENCE_EXHAUSTED"
    assert not math.isnan(summary["last_gl"])
