"""The early-stopping configs through the Hydra entry point: composed, instantiated, trained, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from lightning_reg import EarlyStopping
from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError

CONFIGS = ["early_stopping", "early_stopping_restore", "early_stopping_gl", "early_stopping_pq", "early_stopping_up"]
FAST = ["trainer=debug", "logger=none", "data.batch_size=128"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_composes_and_instantiates(compose_cfg, name):
    cfg = compose_cfg(f"callbacks=[default,{name}]")
    es = instantiate(cfg.callbacks[name])
    assert isinstance(es, EarlyStopping)
    expected = {
        "early_stopping": ("val/acc", "max", "patience"),
        "early_stopping_restore": ("val/acc", "max", "patience"),
        "early_stopping_gl": ("val/loss", "min", "GL"),
        "early_stopping_pq": ("val/loss", "min", "PQ"),
        "early_stopping_up": ("val/loss", "min", "UP"),
    }[name]
    assert (es.monitor, es.mode, es.criterion) == expected
    assert es.restore_best_weights == (name != "early_stopping")


def test_all_five_coexist_in_one_run_and_report(compose_cfg, tmp_path: Path):
    cfg = compose_cfg(f"callbacks=[default,{','.join(CONFIGS)}]", *FAST)
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    reports = {
        r["criterion"] + ("+restore" if r["restore_best_weights"] else ""): r
        for r in metrics["callbacks"].values()
        if "criterion" in r
    }
    assert set(reports) == {"patience", "patience+restore", "GL+restore", "PQ+restore", "UP+restore"}
    for r in reports.values():
        assert r["checks"] == 2 and r["stopped"] is False and r["ended_by"] == "limit"
        assert r["best_epoch"] in (0, 1) and isinstance(r["best_score"], float)
    assert reports["patience+restore"]["restored_epoch"] == reports["patience+restore"]["best_epoch"]


def test_a_stop_reaches_metrics_json(compose_cfg, tmp_path: Path):
    cfg = compose_cfg(
        "callbacks=[default,early_stopping_restore]",
        *FAST,
        "trainer.max_epochs=5",
        "+callbacks.early_stopping_restore.stopping_threshold=0.01",
    )
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (report,) = [r for r in metrics["callbacks"].values() if "criterion" in r]
    assert (report["stopped"], report["stopped_epoch"], report["reason"]) == (True, 0, "stopping_threshold")
    assert (report["best_epoch"], report["restored_epoch"]) == (0, 0)
    assert metrics["epochs_completed"] == 1


def test_bad_config_value_is_a_config_error(compose_cfg):
    cfg = compose_cfg("callbacks=[default,early_stopping_gl]", *FAST, "callbacks.early_stopping_gl.alpha=0")
    with pytest.raises(ConfigError, match=r"callbacks.early_stopping_gl: `alpha` must be in \(0.0, inf\]; got 0"):
        train(cfg)


def test_restore_best_weights_config_alone_is_what_the_entry_point_tests(compose_cfg, tmp_path: Path):
    cfg = compose_cfg("callbacks=[default,restore_best_weights,penalized_loss]", *FAST, "trainer.max_epochs=3")
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (report,) = [r for r in metrics["callbacks"].values() if "source" in r]
    assert report["monitor"] == "val/acc" and report["restored_epoch"] == report["best_epoch"] is not None
    assert metrics["best"]["tested"] == "restored-best-weights"
