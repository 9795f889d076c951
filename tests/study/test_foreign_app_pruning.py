"""Pruning in a Hydra + Lightning app that knows nothing of lightning_reg: its own model, data, config and task
function, with only ``hydra/sweeper: lightning_reg_optuna`` chosen. Lightning gives every Trainer the trial's pruning
through our ``lightning.pytorch.callbacks_factory`` entry point; a pruned fit ends in ``optuna.TrialPruned``, and the
sweeper tells the trial from the job's return (the app's code after ``fit`` does not run, as with any Optuna objective).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

APP = """
import hydra
from hydra.core.hydra_config import HydraConfig
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset


class Scripted(pl.LightningModule):
    # val/acc climbs at a rate set by `quality`: the pruner can tell the poor trials early.
    def __init__(self, quality: float):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)
        self.quality = quality

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", self.quality * (1 + self.current_epoch) / 6)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = pl.Trainer(max_epochs=cfg.epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=cfg.devices, strategy=cfg.strategy)
    trainer.fit(Scripted(cfg.quality), data, data)
    # The app's own code after fit: a pruned fit never gets here, on any rank.
    open(f"{HydraConfig.get().runtime.output_dir}/after_fit.rank{trainer.global_rank}", "w").close()
    return float(trainer.callback_metrics["val/acc"])


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - override hydra/sweeper: lightning_reg_optuna
  - override hydra/sweeper/lightning_reg_sampler: grid
  - override hydra/sweeper/lightning_reg_pruner: median
  - _self_

quality: 0.5
epochs: 6
devices: 1
strategy: auto
optimized_metric: val/acc

hydra:
  sweeper:
    direction: maximize
    study_name: foreign
    n_trials: 6
    params:
      quality: choice(0.9, 0.8, 0.7, 0.3, 0.2, 0.1)
    pruner:
      n_startup_trials: 2
      n_warmup_steps: 1
"""


def test_two_workers_of_a_foreign_app_prune_and_the_storage_says_so(tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(APP)
    (app / "config.yaml").write_text(CONFIG)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_REG_")}
    args = [
        sys.executable,
        "main.py",
        "-m",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    workers = [
        subprocess.Popen(args, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for worker, out in zip(workers, outputs):
        assert worker.returncode == 0, out[-3000:]
    study = optuna.load_study(study_name="foreign", storage=storage)
    trials = study.get_trials()
    states = {t.params["quality"]: t.state for t in trials}
    assert len(trials) == 6 and set(states) == {0.9, 0.8, 0.7, 0.3, 0.2, 0.1}, states
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, f"nothing pruned: {states}"
    assert all(t.params["quality"] <= 0.3 for t in pruned), states
    for t in pruned:  # the job stopped where it was pruned: no report after that epoch, and the epoch is recorded
        epoch = t.user_attrs["lightning_reg:pruned_epoch"]
        assert max(t.intermediate_values) == epoch < 5, (t.number, t.intermediate_values)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(len(t.intermediate_values) == 6 for t in complete)
    assert {t.user_attrs.get("lightning_reg:worker") for t in trials} != {None}

    # The report from the study alone: the app writes no metrics.json.
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_reg.report", "--storage", storage, "--study", "foreign", "--out", str(out),
         "--no-plots"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    spent = sum(t.user_attrs["lightning_reg:epochs_trained"] for t in trials)
    assert spent < 6 * 6 and f"Epochs trained: {spent}, against 36" in report
    assert f"{len(complete)} complete, {len(pruned)} pruned" in report and "quality=0.9" in report
    assert not list(tmp_path.glob("sweep/**/metrics.json")), "the app writes none: the report came from the study"


def test_a_trainer_outside_any_sweep_gets_nothing(monkeypatch):
    monkeypatch.delenv("LIGHTNING_REG_TRIAL", raising=False)
    code = (
        "import sys, lightning.pytorch as pl; t = pl.Trainer(logger=False, enable_checkpointing=False,"
        " enable_progress_bar=False, enable_model_summary=False);"
        " print(sorted(type(c).__name__ for c in t.callbacks), 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "[] False"


def test_a_worker_with_a_study_of_its_own_is_told_how_to_share_one(tmp_path: Path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(APP)
    (app / "config.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_REG_")}
    fast = ["hydra.sweeper.n_trials=1", "epochs=2"]
    said = {}
    for name, extra in (("default", []), ("fixed", [f"hydra.sweep.dir={tmp_path / 'fixed'}"])):
        proc = subprocess.run(
            [sys.executable, "main.py", "-m", *fast, *extra],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        said[name] = [line for line in (proc.stdout + proc.stderr).splitlines() if "a study of its own" in line]
    assert len(said["default"]) == 1 and "hydra.sweep.dir=<a fixed path>" in said["default"][0]
    assert "hydra.sweeper.storage=<a database URL>" in said["default"][0]
    assert said["fixed"] == []


# ---------------------------------------------------------------------------- folds and confirmation in any app

APP_KEYS = APP.replace(
    "    data = DataLoader(",
    "    if cfg.seed == 13:\n        raise RuntimeError('seed 13 breaks this job')\n    data = DataLoader(",
).replace("Scripted(cfg.quality)", "Scripted(cfg.quality * (1 + 0.1 * (cfg.split or 0)))")
CONFIG_KEYS = CONFIG.replace("epochs: 6\n", "epochs: 2\nsplit: null\nsplits: null\nseed: 0\n").replace(
    "n_trials: 6", "n_trials: 2"
)


def _run(tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "main.py").write_text(APP_KEYS)
    (app / "config.yaml").write_text(CONFIG_KEYS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_REG_")}
    cmd = [
        sys.executable,
        "main.py",
        "-m",
        f"hydra.sweep.dir={tmp_path / name}",
        *args,
    ]
    return subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True, timeout=300)


def test_a_fold_key_the_app_lacks_is_one_line_before_the_study_opens(tmp_path: Path):
    proc = _run(tmp_path, "nofold", "hydra.sweeper.folds=2")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert line.startswith("lightning_reg: error: `hydra.sweeper.keys.fold`: the task's config has no key 'data.fold'")
    assert "got 'data.fold=0'" in line
    assert not (tmp_path / "nofold" / "optuna.db").exists(), "nothing is written before the jobs' keys are checked"


def test_folds_run_through_the_apps_own_keys(tmp_path: Path):
    proc = _run(
        tmp_path,
        "folds",
        "hydra.sweeper.folds=2",
        "hydra.sweeper.keys.fold=split",
        "hydra.sweeper.keys.num_folds=splits",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    study = optuna.load_study(study_name="foreign", storage=f"sqlite:///{tmp_path / 'folds' / 'optuna.db'}")
    for t in study.get_trials():
        q = t.params["quality"]  # fold i scales val/acc by 1 + 0.1 i: the trial's value is the folds' mean
        assert t.state == TrialState.COMPLETE and t.value == pytest.approx(q * (1 + 1.1) / 2 * 2 / 6, rel=1e-5)


def test_a_failed_confirmation_job_is_reported_and_the_sweep_exits_non_zero(tmp_path: Path):
    proc = _run(tmp_path, "confirm", "hydra.sweeper.confirm.top_k=1", "hydra.sweeper.confirm.seeds=[1,13]")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("lightning_reg:")]
    assert len(lines) == 1 and "1 of 2 confirmation job(s) failed" in lines[0], proc.stderr[-2000:]
    assert "seed13" in lines[0] and "RuntimeError: seed 13 breaks this job" in lines[0]
    study = optuna.load_study(study_name="foreign", storage=f"sqlite:///{tmp_path / 'confirm' / 'optuna.db'}")
    (row,) = study.user_attrs["lightning_reg:confirm"]
    assert row["seeds"] == [1, 13] and row["values"][0] is not None and row["values"][1] is None
    assert (tmp_path / "confirm" / "study.json").is_file()
