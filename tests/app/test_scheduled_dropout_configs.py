"""The dropout Hydra configs: composed, instantiated and trained through lightning_reg.app.train on the digits MLP."""

from __future__ import annotations

import json
import warnings

import lightning.pytorch as pl
import pytest
from hydra.utils import instantiate

from lightning_reg import Constant, Curriculum, Early, Late, Linear, ScheduledDropout
from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError

from helpers import loaders
from scheduled_dropout_helpers import RateProbe, ResidualModule, trainer_kwargs

# The reference MLP (Flatten, Linear, ReLU, Linear, ReLU, Linear) has no dropout by default: the configs
# inject one after each ReLU.
INJECTED = ["net.2.injected_dropout", "net.4.injected_dropout"]


@pytest.mark.parametrize(
    ("name", "overrides", "schedule_type", "expected_by_epoch"),
    [
        ("dropout_constant", [], Constant, [0.2, 0.2]),
        ("dropout_linear", [], Linear, [0.0, 0.15]),  # 0 -> 0.3 over trainer.max_epochs (2)
        ("dropout_early", ["callbacks.dropout_early.schedule.cutoff=1"], Early, [0.2, 0.0]),
        ("dropout_late", ["callbacks.dropout_late.schedule.cutoff=1"], Late, [0.0, 0.2]),
        # per step: 3 steps per epoch in trainer=debug; the last step of each epoch is logged
        (
            "dropout_curriculum",
            [],
            Curriculum,
            [0.3 * (1 - 2.718281828459045 ** (-0.01 * 2)), 0.3 * (1 - 2.718281828459045 ** (-0.01 * 5))],
        ),
    ],
)
def test_dropout_config_trains_the_default_mlp_through_hydra(
    compose_cfg, tmp_path, name, overrides, schedule_type, expected_by_epoch
):
    cfg = compose_cfg(f"callbacks=[default,{name}]", "trainer=debug", "logger=none", *overrides)
    cb = instantiate(cfg.callbacks[name], _convert_="all")
    assert isinstance(cb, ScheduledDropout) and isinstance(cb.schedule, schedule_type)
    summary = train(cfg)
    report = summary["callbacks"][cb.state_key]
    assert report["injected"] == INJECTED and report["modules"] == INJECTED
    rates = [row["reg/dropout_p"] for row in summary["history"]]
    assert rates == pytest.approx(expected_by_epoch, abs=1e-6)
    assert report["final_rate"] == pytest.approx(expected_by_epoch[-1], abs=1e-6)
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["callbacks"][cb.state_key]["injected"] == INJECTED
    assert on_disk["status"] == "completed" and 0.0 <= on_disk["test"]["test/acc"] <= 1.0


def test_config_schedules_the_models_own_dropout_instead_of_injecting(compose_cfg):
    cfg = compose_cfg(
        "callbacks=[default,dropout_early]",
        "trainer=debug",
        "logger=none",
        "model.dropout=0.5",
        "callbacks.dropout_early.schedule.cutoff=1",
    )
    summary = train(cfg)
    (report,) = [v for k, v in summary["callbacks"].items() if k.startswith("ScheduledDropout")]
    assert report["injected"] == [] and report["modules"] == ["net.3", "net.6"]
    assert [row["reg/dropout_p"] for row in summary["history"]] == pytest.approx([0.2, 0.0])


def test_default_cutoff_beyond_a_short_run_warns(compose_cfg):
    cfg = compose_cfg("callbacks=[default,dropout_late]", "trainer=debug", "logger=none")
    with pytest.warns(
        UserWarning,
        match=r"`cutoff`=10 \(epochs\) lies beyond the end of training: this run has 2 "
        r"epochs \(max_epochs=2",
    ):
        summary = train(cfg)
    assert [row["reg/dropout_p"] for row in summary["history"]] == [0.0, 0.0]


def test_unknown_schedule_name_from_the_command_line(compose_cfg):
    cfg = compose_cfg(
        "callbacks=[default,dropout_early]", "trainer=debug", "callbacks.dropout_early.schedule.name=erly"
    )
    with pytest.raises(
        ConfigError,
        match=r"callbacks.dropout_early: `schedule.name` must be one of 'constant', .*"
        r"'early'.*; got 'erly'",
    ):
        train(cfg)


def test_bad_rate_from_the_command_line(compose_cfg):
    cfg = compose_cfg(
        "callbacks=[default,dropout_constant]", "trainer=debug", "callbacks.dropout_constant.schedule.value=1.0"
    )
    with pytest.raises(
        ConfigError,
        match=r"callbacks.dropout_constant: `schedule` must give drop rates in \[0, 1\); "
        r"Constant\(.*value=1.0\) gives 1.0 at epoch 0",
    ):
        train(cfg)


def test_droppath_config_schedules_drop_prob_modules_with_depth(compose_cfg):
    cfg = compose_cfg("callbacks=[default,droppath_scheduled]", "trainer.max_epochs=4")
    cb = instantiate(cfg.callbacks.droppath_scheduled, _convert_="all")
    assert cb.depth_scale and isinstance(cb.schedule, Linear) and cb.schedule.end_at == 4
    pl.seed_everything(0)
    probe = RateProbe()
    trainer = pl.Trainer(callbacks=[cb, probe], **trainer_kwargs(max_epochs=4, limit_train_batches=2))
    train_dl, val_dl = loaders()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # end_at == max_epochs: the ramp fits the run, no warning
        trainer.fit(ResidualModule(blocks=4), train_dl, val_dl)
    by = probe.by_module()
    for layer in range(4):
        got = [r["p"] for r in by[f"net.{layer + 1}.drop_path"]]
        assert got == pytest.approx([0.2 * e / 4 * (layer + 1) / 4 for e in range(4) for _ in range(2)], abs=1e-12)
    assert trainer.callback_metrics["reg/droppath_p"].item() == pytest.approx(0.15)


def test_droppath_config_on_a_model_without_drop_path_says_what_to_do(compose_cfg):
    cfg = compose_cfg("callbacks=[default,droppath_scheduled]", "trainer=debug", "logger=none")
    with pytest.raises(
        ConfigError,
        match=r"found no module to schedule in MLPClassifier: `modules` selects drop_prob, "
        r"StochasticDepth.*Pass `inject`",
    ):
        train(cfg)
