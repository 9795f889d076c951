"""Real multiruns of ``python -m lightning_reg.train -m`` (grid with joblib, Optuna, a failing run, DDP), and
composition of every sweep, launcher and experiment config."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_reg.app import report as rep
from lightning_reg.app.build import CONF_DIR, _instantiate_dict, build_model

REPO = Path(__file__).resolve().parents[2]
CONF = Path(CONF_DIR)


def multirun(tmp_path: Path, *overrides: str, timeout: float = 240, extra_path: Path | None = None) -> tuple[Path, str]:
    """Run a multirun into ``tmp_path/sweep``; return the sweep dir and the combined output."""
    sweep = tmp_path / "sweep"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO), str(extra_path or ""), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    env.pop("LOCAL_RANK", None)
    cmd = [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={tmp_path / 'outputs'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"multirun failed ({proc.returncode}):\n{out[-6000:]}"
    return sweep, out


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_grid_with_joblib_writes_a_report_whose_numbers_match_the_runs(tmp_path: Path) -> None:
    sweep, out = multirun(
        tmp_path,
        "experiment=regularizers_digits",
        "variant/regularizers_digits=baseline,dropout",
        "seed=1,2",
        "trainer=debug",
        "trainer.max_epochs=3",
        "hydra.launcher.n_jobs=2",
    )
    for name in ("report.md", "report.csv", "runs.csv", "loss_curves.png", "test_acc.png"):
        assert (sweep / name).is_file(), name
    assert "Joblib" in out or "joblib" in out.lower()  # the experiment's launcher ran the jobs
    runs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(runs) == 4

    # Recompute every number of the table from the individual metrics.json files.
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        variant = next(
            o.split("=")[1]
            for o in yaml.safe_load((run / ".hydra/overrides.yaml").read_text())
            if o.startswith("variant/")
        )
        by_variant.setdefault(variant, []).append(metrics_of(run))
    assert {v: sorted(m["seed"] for m in ms) for v, ms in by_variant.items()} == {"baseline": [1, 2], "dropout": [1, 2]}
    assert all(m["config"]["model"]["dropout"] == 0.25 for m in by_variant["dropout"])

    def stats(ms: list[dict], f) -> tuple[float, float]:
        xs = [f(m) for m in ms]
        return statistics.fmean(xs), statistics.stdev(xs)

    def best_val(m: dict) -> float:
        # metrics.json's history, else (when the best-checkpoint reload cut it short) the CSV log the report reads
        hist = m["history"]
        return max(r["val/acc"] for r in hist if "val/acc" in r)

    rows = {r["configuration"]: r for r in csv.DictReader((sweep / "report.csv").open())}
    assert set(rows) == {"baseline", "dropout"}
    base_mean, base_std = stats(by_variant["baseline"], lambda m: m["test"]["test/acc"])
    md = (sweep / "report.md").read_text()
    for variant, ms in by_variant.items():
        row = rows[variant]
        acc_mean, acc_std = stats(ms, lambda m: m["test"]["test/acc"])
        loss_mean, loss_std = stats(ms, lambda m: m["test"]["test/loss"])
        assert float(row["test_acc_mean"]) == pytest.approx(acc_mean, abs=1e-12)
        assert float(row["test_acc_std"]) == pytest.approx(acc_std, abs=1e-12)
        assert float(row["test_loss_mean"]) == pytest.approx(loss_mean, abs=1e-12)
        assert float(row["last_epoch_mean"]) == statistics.fmean(m["last_epoch"] for m in ms) == 2
        assert float(row["wall_s_mean"]) == pytest.approx(statistics.fmean(m["fit_seconds"] for m in ms))
        assert float(row["delta_test_acc"]) == pytest.approx(acc_mean - base_mean, abs=1e-12)
        if base_std > 0:
            assert float(row["delta_in_baseline_std"]) == pytest.approx((acc_mean - base_mean) / base_std)
        if all(len(m["history"]) == m["epochs_completed"] for m in ms):
            assert float(row["best_val_acc_mean"]) == pytest.approx(statistics.fmean(best_val(m) for m in ms))
            gap = statistics.fmean(m["history"][-1]["train/acc"] - m["history"][-1]["val/acc"] for m in ms)
            assert float(row["gap_mean"]) == pytest.approx(gap)
        # The markdown table shows the same numbers, rounded.
        assert f"{acc_mean:.4f} ± {acc_std:.4f}" in md
    assert int(rows["baseline"]["baseline"]) == 1 and "baseline **(baseline)**" in md
    # ... and the end of the multirun printed that table.
    assert rep.format_table(rep.build(sweep)) in out

    # The CLI rebuilds the same report elsewhere.
    assert rep.main([str(sweep), "--out", str(tmp_path / "again"), "--no-plots"]) == 0
    assert (tmp_path / "again" / "report.csv").read_text() == (sweep / "report.csv").read_text()


@pytest.mark.slow
def test_a_failing_run_is_recorded_and_the_sweep_goes_on_to_the_report(tmp_path: Path) -> None:
    sweep, out = multirun(
        tmp_path,
        "trainer=debug",
        "trainer.max_epochs=1",
        "model.dropout=1.5,0.1",
        "seed=1",
        "~callbacks.model_checkpoint",
    )
    failed = metrics_of(sweep / "0")
    assert failed["status"] == "failed" and "dropout" in failed["error"] and "1.5" in failed["error"]
    assert metrics_of(sweep / "1")["status"] == "completed"  # the next job still ran
    md = (sweep / "report.md").read_text()
    assert "## Failed runs (1)" in md and failed["error"].splitlines()[0] in md
    assert "| model.dropout=1.5 | 0/1 (1 failed) |" in md
    assert "1 FAILED" in out


@pytest.mark.slow
def test_optuna_random_search_of_four_trials_runs_and_reports(tmp_path: Path) -> None:
    sweep, out = multirun(tmp_path, "hparams_search=digits_random", "hydra.sweeper.n_trials=4", "trainer=debug")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    runs = sorted((p for p in sweep.iterdir() if (p / "metrics.json").is_file()), key=lambda p: int(p.name))
    assert len(runs) == 4
    values = [metrics_of(r)["optimized_value"] for r in runs]
    assert results["best_value"] == pytest.approx(max(values))
    report = rep.build(sweep)
    assert report.sweeper == "optuna" and len(report.configs) == 4
    assert sorted(c.mean["objective"] for c in report.configs) == pytest.approx(sorted(values))
    assert (sweep / "optimization_history.png").is_file() and (sweep / "params.png").is_file()
    md = (sweep / "report.md").read_text()
    assert "# Study report: digits_random" in md and "maximize `val/acc`" in md and "4 complete" in md
    # Trials ranked by the validation metric, best first; no test metrics for a search.
    ranked = [float(line.split("|")[4]) for line in md.splitlines() if line.startswith("| ") and "complete" in line]
    assert ranked == pytest.approx(sorted(values, reverse=True), abs=5e-5) and "test/acc" not in md
    # Each trial drew its own learning rate from the log-uniform interval.
    lrs = {metrics_of(r)["config"]["optimizer"]["lr"] for r in runs}
    assert len(lrs) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)


PROBE = '''
import json, pathlib
import lightning.pytorch as pl

class RankProbe(pl.Callback):
    """Writes what this rank trains with: its model hparams, optimizer lr and batch size."""
    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
    def on_train_start(self, trainer, pl_module):
        seen = {"world_size": trainer.world_size, "dropout": pl_module.hparams["dropout"],
                "lr": trainer.optimizers[0].param_groups[0]["lr"], "batch_size": trainer.datamodule.batch_size}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(seen))
'''


@pytest.mark.slow
def test_every_ddp_rank_trains_the_same_optuna_trial(tmp_path: Path) -> None:
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "rank_probe.py").write_text(PROBE)
    # An unseeded sampler: a rank that re-ran the sweep itself would draw different parameters.
    sweep, out = multirun(
        tmp_path,
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.seed=null",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "+callbacks.probe._target_=rank_probe.RankProbe",
        "+callbacks.probe.out_dir=${paths.output_dir}",
        timeout=300,
        extra_path=tmp_path / "probe",
    )
    runs = sorted((p for p in sweep.iterdir() if (p / "metrics.json").is_file()), key=lambda p: int(p.name))
    assert len(runs) == 2
    drawn = []
    for run in runs:
        m = metrics_of(run)
        assert m["status"] == "completed" and m["world_size"] == 2
        rank0, rank1 = (json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1))
        assert rank0 == rank1
        assert rank0["lr"] == m["config"]["optimizer"]["lr"] and rank0["dropout"] == m["config"]["model"]["dropout"]
        assert rank0["batch_size"] == m["config"]["data"]["batch_size"]
        drawn.append((rank0["lr"], rank0["dropout"]))
    assert drawn[0] != drawn[1]
    assert (sweep / "report.md").is_file()


# --------------------------------------------------------------------------- composition


def compose_full(*overrides: str, tmp_path: Path) -> DictConfig:
    """Compose train.yaml with the hydra node (sweeper, launcher, callbacks) as a multirun would."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.data_dir = str(tmp_path / "data")
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    return cfg


def instantiate_job(cfg: DictConfig) -> None:
    """Build what train() builds before fitting: data, model, callbacks."""
    datamodule = instantiate(cfg.data, _convert_="all")
    build_model(cfg, datamodule)
    import lightning.pytorch as pl

    _instantiate_dict(cfg.get("callbacks"), "callbacks", pl.Callback)


def sweep_points(cfg: DictConfig, key: str) -> list[str]:
    return str(cfg.hydra.sweeper.params[key]).split(",")


DIGITS_EXPERIMENTS = ["regularizers_digits", "l2_vs_dropout"]


@pytest.mark.parametrize("experiment", DIGITS_EXPERIMENTS)
def test_digits_experiments_compose_and_two_variants_instantiate(experiment: str, tmp_path: Path) -> None:
    cfg = compose_full(f"experiment={experiment}", tmp_path=tmp_path)
    assert cfg.task_name == experiment and cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert sweep_points(cfg, "seed") == ["1", "2", "3"]
    variants = sweep_points(cfg, f"variant/{experiment}")
    assert variants[0] == "baseline"
    for v in variants:
        assert (CONF / "variant" / experiment / f"{v}.yaml").is_file(), v
    for v in ("baseline", "dropout"):  # the test below builds every variant of every experiment
        vcfg = compose_full(f"experiment={experiment}", f"variant/{experiment}={v}", tmp_path=tmp_path)
        assert (vcfg.model.dropout > 0) == (v == "dropout")
        instantiate_job(vcfg)


@pytest.mark.parametrize(
    "experiment", ["regularizers_digits", "l2_vs_dropout", "seed003_mnist_mlp", "seed002_random_search"]
)
def test_every_variant_of_every_experiment_composes_and_instantiates(experiment: str, tmp_path: Path) -> None:
    for variant_file in sorted((CONF / "variant" / experiment).glob("*.yaml")):
        cfg = compose_full(f"experiment={experiment}", f"variant/{experiment}={variant_file.stem}", tmp_path=tmp_path)
        assert cfg.task_name == experiment
        if "mnist" in str(cfg.data._target_).lower():
            continue  # MNIST needs the files; composing is what this test checks for it
        instantiate_job(cfg)


def test_cifar10_case_study_runs_a_fast_dev_run_on_generated_cifar_files(tmp_path: Path) -> None:
    from data_factories import make_cifar10

    make_cifar10(tmp_path / "data", per_batch=20, n_test=20)
    # Generated batches cannot match CIFAR's published MD5 sums.
    cfg = compose_full(
        "experiment=seed001_cifar10_cnn", "+trainer.fast_dev_run=true", "data.check_integrity=false", tmp_path=tmp_path
    )
    assert cfg.callbacks.l2.l2 == 1e-3 and cfg.model.dropout == 0.5 and cfg.data.batch_size == 64
    from lightning_reg.app.train import train

    with open_dict(cfg):
        del cfg.hydra
    assert train(cfg)["status"] == "completed"


@pytest.mark.parametrize("name,sampler", [("digits_optuna", "TPESampler"), ("digits_random", "RandomSampler")])
def test_optuna_search_configs_compose_with_a_seeded_sampler(name: str, sampler: str, tmp_path: Path) -> None:
    cfg = compose_full(f"hparams_search={name}", tmp_path=tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("LightningRegOptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.n_trials == 20 and cfg.optimized_metric == "val/acc"
    built = instantiate(sweeper.sampler)
    assert type(built).__name__ == sampler and sweeper.sampler.seed == 1234
    assert set(sweeper.params) == {"optimizer.lr", "model.dropout", "data.batch_size"}
    from lightning_reg.study.search_space import parse_search_space

    space = parse_search_space(dict(sweeper.params), [])
    lr, dropout, batch = (space.distributions[k] for k in ("optimizer.lr", "model.dropout", "data.batch_size"))
    assert (type(lr).__name__, lr.log, lr.low, lr.high) == ("FloatDistribution", True, 1e-4, 1e-2)
    assert (type(dropout).__name__, dropout.log, dropout.low, dropout.high) == ("FloatDistribution", False, 0.0, 0.5)
    assert type(batch).__name__ == "CategoricalDistribution" and batch.choices == (32, 64, 128)
    from lightning_reg.study.engine import build_pruner

    pruner = build_pruner(
        OmegaConf.to_container(sweeper.pruner)
    )  # conf/hydra/sweeper/lightning_reg_pruner/top_quarter.yaml
    expected = "PercentilePruner" if name == "digits_optuna" else "NopPruner"
    assert type(pruner).__name__ == expected
    if name == "digits_optuna":
        assert (sweeper.pruner.percentile, sweeper.pruner.n_startup_trials) == (25.0, 2)


def test_grid_search_config_sweeps_every_combination(tmp_path: Path) -> None:
    cfg = compose_full("hparams_search=digits_grid", tmp_path=tmp_path)
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")
    assert sweep_points(cfg, "optimizer.lr") == ["1e-3", "3e-3", "1e-2"]
    assert sweep_points(cfg, "model.dropout") == ["0.0", "0.25", "0.5"]
    instantiate_job(
        compose_full("hparams_search=digits_grid", "optimizer.lr=1e-2", "model.dropout=0.5", tmp_path=tmp_path)
    )


def test_slurm_and_joblib_launcher_configs_compose_and_instantiate(tmp_path: Path) -> None:
    cfg = compose_full("hydra/launcher=slurm", "hydra.launcher.partition=gpu", tmp_path=tmp_path)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("SlurmLauncher")
    assert (launcher_cfg.timeout_min, launcher_cfg.gpus_per_node, launcher_cfg.tasks_per_node) == (60, 1, 1)
    assert launcher_cfg.submitit_folder == str(tmp_path / "sweep" / ".submitit" / "%j")
    launcher = instantiate(launcher_cfg)
    assert type(launcher).__name__ == "SlurmLauncher" and launcher.params["partition"] == "gpu"
    joblib_cfg = compose_full("experiment=regularizers_digits", tmp_path=tmp_path).hydra.launcher
    assert type(instantiate(joblib_cfg)).__name__ == "JoblibLauncher"


def test_report_callback_writes_the_report_of_the_runs_in_the_sweep_dir(tmp_path: Path) -> None:
    from lightning_reg.app.train import train

    sweep = tmp_path / "sweep"
    test_acc = {}
    for job, variant in enumerate(("baseline", "dropout")):
        overrides = [
            "experiment=regularizers_digits",
            f"variant/regularizers_digits={variant}",
            "seed=1",
            "trainer=debug",
            "trainer.max_epochs=2",
        ]
        cfg = compose_full(*overrides, tmp_path=tmp_path)
        job_dir = sweep / str(job)
        # What Hydra writes into every job directory of a multirun; the report groups the runs by it.
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        with open_dict(cfg):
            cfg.paths.output_dir = str(job_dir)
            del cfg.hydra
        assert train(cfg)["status"] == "completed"
        test_acc[variant] = metrics_of(job_dir)["test"]["test/acc"]

    cfg = compose_full(tmp_path=tmp_path)  # hydra.sweep.dir is tmp_path / "sweep"
    cb = instantiate(cfg.hydra.callbacks.report)
    assert type(cb).__name__ == "ReportCallback" and cb.plots and cb.baseline is None
    cb.on_multirun_start(cfg)
    cb.on_multirun_end(cfg)  # a report that cannot be built is only logged: the files below would be missing
    rows = {r["configuration"]: r for r in csv.DictReader((sweep / "report.csv").open())}
    assert set(rows) == {"baseline", "dropout"}
    for variant, acc in test_acc.items():
        row = rows[variant]
        assert (row["runs"], row["failed"], row["seeds"]) == ("1", "0", "1")
        assert float(row["test_acc_mean"]) == pytest.approx(acc)
    assert int(rows["baseline"]["baseline"]) == 1 and int(rows["dropout"]["baseline"]) == 0
    assert float(rows["dropout"]["delta_test_acc"]) == pytest.approx(test_acc["dropout"] - test_acc["baseline"])
    md = (sweep / "report.md").read_text()
    assert "baseline **(baseline)**" in md
    assert all(f"{acc:.4f}" in md for acc in test_acc.values())
    assert [r["status"] for r in csv.DictReader((sweep / "runs.csv").open())] == ["completed", "completed"]
    if importlib.util.find_spec("matplotlib") is not None:
        assert (sweep / "loss_curves.png").is_file() and (sweep / "test_acc.png").is_file()
