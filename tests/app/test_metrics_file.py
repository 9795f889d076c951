"""The metrics.json schema: round trip, files written before schema_version existed, a newer version refused,
and what a real entry-point run writes (the two epoch fields with their two meanings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lightning_reg.app import report as rep
from lightning_reg.app.train import finished_job_value, train
from lightning_reg.metrics_file import (
    SCHEMA_VERSION,
    MetricsFileError,
    SchemaVersionError,
    read_metrics,
    upgrade,
    write_metrics,
)

FAST = ["trainer=debug", "logger=none", "data.batch_size=128"]


def _job_dir(root: Path, metrics: dict) -> Path:
    run = root / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=1"]))
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_round_trip_keeps_every_field_and_stamps_the_version(tmp_path: Path) -> None:
    record = {
        "status": "completed",
        "seed": 3,
        "test": {"test/acc": 0.91},
        "last_epoch": 7,
        "early_stop_epoch": 5,
        "fit_seconds": float("inf"),
        "history": [{"epoch": 0.0, "val/acc": 0.5}],
        "config": {"storage": "postgresql://u:secret@db/x"},
    }
    path = write_metrics(tmp_path / "metrics.json", record)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == "1.0"
    assert next(iter(raw)) == "schema_version"  # first, so a reader sees it at the top
    back = read_metrics(path)
    assert back == {
        **record,
        "schema_version": "1.0",
        "fit_seconds": "inf",  # strict JSON: non-finite floats as strings, as before
        "config": {"storage": "postgresql://u:***@db/x"},
    }


def test_a_file_without_schema_version_is_read_with_its_stopped_epoch_as_last_epoch(tmp_path: Path) -> None:
    old = {
        "status": "completed",
        "seed": 1,
        "test": {"test/acc": 0.8, "test/loss": 0.5},
        "stopped_epoch": 6,  # before 1.0: the last epoch trained
        "history": [{"epoch": float(e), "train/acc": 0.9, "val/acc": 0.7} for e in range(7)],
        "callbacks": {
            "EarlyStopping{'monitor': 'val/acc'}": {"stopped": True, "stopped_epoch": 6, "reason": "patience"}
        },
        "fit_seconds": 1.5,
    }
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    record = read_metrics(tmp_path / "metrics.json")
    assert record["schema_version"] == "1.0" and "stopped_epoch" not in record
    assert (record["last_epoch"], record["early_stop_epoch"]) == (6, 6)
    # Through the report, as a sweep directory of an older lightning_reg.
    run = rep.load_run(_job_dir(tmp_path / "sweep", old))
    assert (run.status, run.last_epoch, run.early_stop_epoch, run.test_acc) == ("completed", 6, 6, 0.8)
    # An old file without early stopping: no early-stop epoch, and the last epoch still read.
    plain = upgrade({"status": "completed", "stopped_epoch": 2, "callbacks": {}})
    assert (plain["last_epoch"], plain["early_stop_epoch"]) == (2, None)


def test_a_newer_major_version_is_refused_with_a_clear_error_and_a_newer_minor_is_read(tmp_path: Path) -> None:
    future = {"schema_version": "2.0", "status": "completed", "epochs": {"last": 3}}
    run = _job_dir(tmp_path / "sweep", future)
    msg = r"schema_version '2\.0'; this lightning_reg reads versions 0\.x to 1\.x\. Upgrade lightning_reg"
    with pytest.raises(SchemaVersionError, match=msg):
        read_metrics(run / "metrics.json")
    with pytest.raises(rep.ReportError, match=msg):  # the report refuses it instead of guessing
        rep.load_runs(tmp_path / "sweep")
    assert rep.main([str(tmp_path / "sweep"), "--no-plots"]) == 2
    with pytest.raises(SchemaVersionError, match=r"`schema_version` must be a string \"MAJOR.MINOR\".*got 1\."):
        upgrade({"schema_version": 1, "status": "completed"})
    newer_minor = upgrade({"schema_version": "1.7", "status": "completed", "last_epoch": 4, "new_field": 1})
    assert (newer_minor["schema_version"], newer_minor["last_epoch"], newer_minor["new_field"]) == ("1.7", 4, 1)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(MetricsFileError, match="unreadable") as err:
        read_metrics(tmp_path / "broken.json")
    assert not isinstance(err.value, SchemaVersionError)


def test_entry_point_writes_last_epoch_and_early_stop_epoch(compose_cfg, tmp_path: Path) -> None:
    # Trained to max_epochs: the last epoch is 2, and early stopping did not fire.
    summary = train(compose_cfg(*FAST, "trainer.max_epochs=3", output_dir=tmp_path / "limit"))
    written = json.loads((tmp_path / "limit" / "metrics.json").read_text())
    assert written["schema_version"] == "1.0" and "stopped_epoch" not in written
    assert (written["last_epoch"], written["early_stop_epoch"], written["epochs_completed"]) == (2, None, 3)
    assert summary["last_epoch"] == 2 and summary["schema_version"] == "1.0"

    # lightning_reg's EarlyStopping: the threshold is reached in epoch 0, where the fit ends.
    cfg = compose_cfg(
        "callbacks=[default,early_stopping]",
        *FAST,
        "trainer.max_epochs=6",
        "+callbacks.early_stopping.stopping_threshold=0.01",
        output_dir=tmp_path / "early",
    )
    train(cfg)
    written = json.loads((tmp_path / "early" / "metrics.json").read_text())
    (es,) = [r for r in written["callbacks"].values() if "criterion" in r]
    assert (es["stopped"], es["stopped_epoch"]) == (True, 0)
    assert (written["early_stop_epoch"], written["last_epoch"], written["epochs_completed"]) == (0, 0, 1)

    # Lightning's own EarlyStopping (no run_summary): its stopped_epoch. min_delta=1 on an accuracy: no epoch
    # after the first improves, so patience 1 runs out in epoch 1.
    cfg = compose_cfg(
        *FAST,
        "trainer.max_epochs=6",
        "+callbacks.plain_es._target_=lightning.pytorch.callbacks.EarlyStopping",
        "+callbacks.plain_es.monitor=val/acc",
        "+callbacks.plain_es.mode=max",
        "+callbacks.plain_es.patience=1",
        "+callbacks.plain_es.min_delta=1.0",
        output_dir=tmp_path / "lightning_es",
    )
    train(cfg)
    written = json.loads((tmp_path / "lightning_es" / "metrics.json").read_text())
    assert (written["early_stop_epoch"], written["last_epoch"]) == (1, 1)


def test_a_finished_job_of_a_newer_schema_is_not_judged(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(*FAST, output_dir=tmp_path / "done")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text(json.dumps({"schema_version": "3.1", "status": "completed"}))
    with pytest.raises(SchemaVersionError, match="3.1"):
        finished_job_value(cfg)


def test_a_finished_pruned_job_returns_pruned_again_and_a_completed_one_its_value(compose_cfg, tmp_path: Path) -> None:
    import optuna

    cfg = compose_cfg(*FAST, output_dir=tmp_path / "done")
    train(cfg)
    path = tmp_path / "done" / "metrics.json"
    record = json.loads(path.read_text())
    assert finished_job_value(cfg) == (True, record["optimized_value"])
    # The same job's record had it been pruned (what app/job.run writes before it raises): the resumed sweep's
    # skipped job says "pruned" again, through the job's return, the one channel of its outcome.
    path.write_text(json.dumps({**record, "status": "pruned", "pruned_epoch": 0}))
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 0"):
        finished_job_value(cfg)
