"""The sweep report's aggregation, writers and error messages, on run directories written by the test."""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from lightning_reg.app import report as rep
from lightning_reg.app.report_plots import curve_band
from lightning_reg.plotting import MissingMatplotlib


def write_run(
    root: Path,
    num: int,
    overrides: list[str],
    *,
    status: str = "completed",
    test_acc: float = 0.9,
    test_loss: float = 0.3,
    history: list[dict] | None = None,
    task: str = "exp",
    seed: int = 1,
    fit_seconds: float = 2.0,
    stopped_epoch: int | None = None,
    error: str | None = None,
    objective: float | None = None,
) -> Path:
    """A job directory laid out as Hydra's multirun + lightning_reg.app.train write it."""
    run = root / str(num)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if status == "missing":
        return run
    history = (
        history
        if history is not None
        else [
            {"epoch": 0.0, "train/acc": 0.6, "val/acc": 0.5, "train/loss": 1.0, "val/loss": 1.1},
            {"epoch": 1.0, "train/acc": 0.9, "val/acc": 0.7, "train/loss": 0.5, "val/loss": 0.8},
        ]
    )
    metrics: dict = {"status": status, "seed": seed, "config": {"task_name": task, "seed": seed}}
    if status == "completed":
        metrics.update(
            test={"test/acc": test_acc, "test/loss": test_loss},
            history=history,
            fit_seconds=fit_seconds,
            stopped_epoch=len(history) - 1 if stopped_epoch is None else stopped_epoch,
            optimized_value=objective,
        )
    else:
        metrics.update(error=error or "RuntimeError: boom", traceback="Traceback ...")
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def grid(root: Path) -> dict[str, list[float]]:
    """baseline / l2 / dropout x seeds 1..3 with known test accuracies."""
    accs = {"baseline": [0.80, 0.82, 0.81], "l2": [0.85, 0.86, 0.87], "dropout": [0.83, 0.80, 0.86]}
    num = 0
    for variant, values in accs.items():
        for seed, acc in enumerate(values, 1):
            write_run(
                root,
                num,
                [f"variant/exp={variant}", f"seed={seed}", "experiment=exp"],
                test_acc=acc,
                seed=seed,
                fit_seconds=float(num),
            )
            num += 1
    return accs


def test_groups_by_configuration_ignoring_seed_and_compares_with_the_baseline(tmp_path: Path) -> None:
    accs = grid(tmp_path)
    report = rep.build(tmp_path)
    assert [c.label for c in report.configs] == ["l2", "dropout", "baseline"]  # sorted by mean test acc
    assert report.common_overrides == ["experiment=exp"]
    base_mean, base_std = statistics.fmean(accs["baseline"]), statistics.stdev(accs["baseline"])
    for c in report.configs:
        assert c.mean["test_acc"] == pytest.approx(statistics.fmean(accs[c.label]))
        assert c.std["test_acc"] == pytest.approx(statistics.stdev(accs[c.label]))
        assert c.delta == pytest.approx(statistics.fmean(accs[c.label]) - base_mean)
        assert c.delta_in_std == pytest.approx((statistics.fmean(accs[c.label]) - base_mean) / base_std)
        assert c.is_baseline == (c.label == "baseline")
        assert sorted(c.seeds) == [1, 2, 3]
    assert report.baseline is report.configs[2]


def test_summarize_metrics_finds_best_val_epoch_last_epoch_and_final_gap() -> None:
    hist = [
        {"epoch": 0, "train/acc": 0.5, "val/acc": 0.6},
        {"epoch": 1, "train/acc": 0.8, "val/acc": 0.75},
        {"epoch": 2, "train/acc": 1.0, "val/acc": 0.75},
        {"epoch": 3, "train/acc": 1.0, "val/acc": 0.7},
    ]
    out = rep.summarize_metrics(
        {
            "schema_version": "1.0",
            "test": {"test/acc": 0.71, "test/loss": 0.9},
            "history": hist,
            "last_epoch": 3,
            "early_stop_epoch": 3,
            "fit_seconds": 4.5,
        }
    )
    assert out["best_val_acc"] == 0.75 and out["best_epoch"] == 1  # first epoch reaching the best
    assert (out["last_epoch"], out["early_stop_epoch"]) == (3, 3)
    # A file written before schema 1.0 called the last epoch trained `stopped_epoch`.
    legacy = rep.summarize_metrics({"test": {"test/acc": 0.71}, "history": hist, "stopped_epoch": 2})
    assert (legacy["last_epoch"], legacy["early_stop_epoch"]) == (2, None)
    assert out["gap"] == pytest.approx(0.3)
    assert (out["test_acc"], out["test_loss"], out["wall_s"]) == (0.71, 0.9, 4.5)


def test_mean_std_uses_the_sample_std_and_skips_missing_values() -> None:
    assert rep.mean_std([1.0, 2.0, None, float("nan"), 3.0]) == (2.0, 1.0, 3)
    m, s, n = rep.mean_std([0.5])
    assert (m, n) == (0.5, 1) and math.isnan(s)
    assert rep.mean_std([None])[2] == 0


def test_writes_markdown_csv_and_runs_csv_with_the_same_numbers(tmp_path: Path) -> None:
    grid(tmp_path / "sweep")
    report = rep.make_report(tmp_path / "sweep", out_dir=tmp_path / "out", plots=False, echo=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert rep.format_table(report) in md
    assert "| 1 | l2 | 3/3 | 0.8600 ± 0.0100 | +0.0500 | +5.00 |" in md
    assert "baseline **(baseline)**" in md
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert [r["configuration"] for r in rows] == ["l2", "dropout", "baseline"]
    assert float(rows[0]["test_acc_mean"]) == pytest.approx(0.86)
    assert float(rows[0]["delta_in_baseline_std"]) == pytest.approx(5.0)
    runs = list(csv.DictReader((tmp_path / "out" / "runs.csv").open()))
    assert len(runs) == 9 and {r["status"] for r in runs} == {"completed"}


def test_failed_and_unfinished_runs_appear_with_their_error(tmp_path: Path) -> None:
    write_run(tmp_path, 0, ["model.dropout=0.1", "seed=1"], test_acc=0.9)
    write_run(
        tmp_path,
        1,
        ["model.dropout=0.1", "seed=2"],
        status="failed",
        error="ConfigError: model: `dropout` must be in [0, 1); got 1.5.",
    )
    write_run(tmp_path, 2, ["model.dropout=0.2", "seed=1"], status="missing")
    report = rep.make_report(tmp_path, plots=False, echo=False)
    assert len(report.failed) == 2
    by_label = {c.label: c for c in report.configs}
    assert by_label["model.dropout=0.1"].n_ok == 1 and by_label["model.dropout=0.1"].n_failed == 1
    assert by_label["model.dropout=0.1"].mean["test_acc"] == 0.9  # the failed seed does not enter the mean
    assert math.isnan(by_label["model.dropout=0.2"].mean["test_acc"])
    assert report.configs[-1].label == "model.dropout=0.2"  # configurations without results rank last
    md = (tmp_path / "report.md").read_text()
    assert "## Failed runs (2)" in md
    assert "`dropout` must be in [0, 1); got 1.5." in md
    assert "no metrics.json: the job did not finish" in md
    assert "| 1/2 (1 failed) |" in md


def test_no_runs_gives_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(rep.ReportError, match="no runs found under"):
        rep.build(tmp_path)
    with pytest.raises(rep.ReportError, match="does not exist"):
        rep.build(tmp_path / "nope")
    assert rep.main([str(tmp_path)]) == 2
    assert "lightning_reg.report: error: no runs found" in capsys.readouterr().err


def test_mixed_experiments_give_a_clear_message(tmp_path: Path) -> None:
    write_run(tmp_path / "a", 0, ["experiment=regularizers_digits", "seed=1"], task="regularizers_digits")
    write_run(tmp_path / "b", 0, ["experiment=l2_vs_dropout", "seed=1"], task="l2_vs_dropout")
    with pytest.raises(
        rep.ReportError,
        match=r"mixes runs of different experiments: 'l2_vs_dropout' \(1 runs\), "
        r"'regularizers_digits' \(1 runs\)",
    ):
        rep.build(tmp_path)


def test_baseline_can_be_named_and_a_wrong_name_lists_the_choices(tmp_path: Path) -> None:
    grid(tmp_path)
    report = rep.build(tmp_path, baseline="dropout")
    assert report.baseline.label == "dropout" and report.baseline.delta == 0.0
    with pytest.raises(
        rep.ReportError,
        match=r"`baseline` must name one of the configurations 'l2', 'dropout', "
        r"'baseline'; got 'l3'",
    ):
        rep.build(tmp_path, baseline="l3")


def test_csv_log_fills_in_epochs_missing_from_metrics_json(tmp_path: Path) -> None:
    run = write_run(
        tmp_path, 0, ["seed=1"], history=[{"epoch": 0.0, "train/acc": 0.5, "val/acc": 0.4}], stopped_epoch=2
    )
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text(
        "epoch,step,test/acc,train/acc,val/acc\n"
        "0,3,,,0.4\n0,3,,0.5,\n1,6,,,0.8\n1,6,,0.9,\n2,9,,,0.7\n2,9,,1.0,\n3,9,0.75,,\n"
    )
    r = rep.load_run(run)
    assert [row["epoch"] for row in r.history] == [0.0, 1.0, 2.0]  # the test stage's row is not an epoch
    assert (r.best_val_acc, r.best_epoch) == (0.8, 1)
    assert r.gap == pytest.approx(0.3)


def test_plots_are_written_and_linked(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    grid(tmp_path)
    rep.make_report(tmp_path, echo=False)
    for name in ("loss_curves.png", "test_acc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "optimization_history.png").exists()  # not an Optuna sweep


def test_optuna_sweep_gets_an_optimization_history(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for i, v in enumerate([0.5, 0.7, 0.6]):
        write_run(tmp_path, i, [f"optimizer.lr={0.001 * (i + 1)}"], objective=v)
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "optimized_metric": "val/acc",
                "hydra": {
                    "sweeper": {
                        "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
                        "direction": "maximize",
                    }
                },
            }
        )
    )
    report = rep.make_report(tmp_path, echo=False)
    assert report.sweeper == "optuna" and report.optimized_metric == "val/acc"
    assert (tmp_path / "optimization_history.png").is_file()


def test_without_matplotlib_the_report_is_written_and_says_why_no_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    grid(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    from lightning_reg.app import report_plots

    with pytest.raises(MissingMatplotlib, match=r'pip install "lightning-reg\[plots\]"'):
        report_plots.plot_all(rep.build(tmp_path), tmp_path)
    rep.make_report(tmp_path, echo=False)
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "test_acc.png").exists()


def test_curve_band_is_mean_min_max_over_runs_per_epoch() -> None:
    a = [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.4}]
    b = [{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 0.6}, {"epoch": 2, "loss": 0.5}]
    epochs, mean, lo, hi = curve_band([a, b], "loss")
    assert epochs == [0.0, 1.0, 2.0]
    assert mean == pytest.approx([1.5, 0.5, 0.5]) and lo == [1.0, 0.4, 0.5] and hi == [2.0, 0.6, 0.5]


def test_config_key_drops_seed_paths_and_hydra_settings() -> None:
    key = rep.config_key(
        ["+variant/x=l2", "seed=3", "paths.log_dir=/tmp", "hydra.launcher.n_jobs=2", "model.dropout=0.1"]
    )
    assert key == ("model.dropout=0.1", "variant/x=l2")
    assert rep.pretty_override("variant/x=l2") == "l2"


def test_folds_group_like_seeds_into_mean_and_std(tmp_path: Path) -> None:
    accs = {("0.0", 0): 0.80, ("0.0", 1): 0.84, ("0.0", 2): 0.88, ("0.5", 0): 0.90, ("0.5", 1): 0.92, ("0.5", 2): 0.94}
    for i, ((dropout, fold), acc) in enumerate(accs.items()):
        write_run(tmp_path, i, [f"model.dropout={dropout}", f"data.fold={fold}", "data.num_folds=3"], test_acc=acc)
    report = rep.build(tmp_path)
    assert len(report.configs) == 2
    by = {c.label: c for c in report.configs}
    assert set(by) == {"model.dropout=0.0", "model.dropout=0.5"}
    assert by["model.dropout=0.5"].mean["test_acc"] == pytest.approx(0.92)
    assert by["model.dropout=0.5"].std["test_acc"] == pytest.approx(0.02)
    assert len(by["model.dropout=0.0"].runs) == 3
