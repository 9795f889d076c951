"""Drop-in use: a plain existing project, the user's own Hydra app (via our SearchPathPlugin), LightningCLI."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from helpers import REPO

sys.path.insert(0, str(REPO / "examples"))
import existing_project  # noqa: E402

from lightning_reg import EarlyStopping, MaxNorm, RNGState, ScheduledDropout, WeightPenalty  # noqa: E402
from lightning_reg.callbacks import AtomicModelCheckpoint, MetricsHistory  # noqa: E402
from lightning_reg.data import AugmentationMixin  # noqa: E402


# ------------------------------------------------------------------------------------------ plain Python
def test_example_model_and_data_code_import_nothing_from_lightning_reg() -> None:
    tree = ast.parse((REPO / "examples" / "existing_project.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any(n.startswith("lightning_reg") for n in names), ast.unparse(node)
        if isinstance(node, ast.ClassDef):
            assert "lightning_reg" not in ast.unparse(node), node.name


def test_existing_project_gains_every_regularizer_by_callbacks_and_a_wrapped_datamodule() -> None:
    out = existing_project.main(["--max-epochs", "4", "--patience", "1", "--limit-train-batches", "4"])
    model, dm = out["model"], out["datamodule"]
    assert isinstance(dm, AugmentationMixin) and isinstance(dm, existing_project.DigitsData)
    assert type(model) is existing_project.DigitsClassifier
    cbs = out["callbacks"]
    assert cbs["WeightPenalty"]["optimizer_steps"] == out["trainer"].global_step > 0
    assert cbs["ScheduledDropout"]["injected"] == ["net.2.injected_dropout", "net.4.injected_dropout"]
    es = cbs["EarlyStopping"]
    assert es["restore_best_weights"] and es["restored_epoch"] == es["best_epoch"] is not None
    assert 0.0 <= out["test"]["test/acc"] <= 1.0
    # Augmentation touches training batches only: a training batch through the DataModule's hook changes.
    x, y = next(iter(dm.train_dataloader()))
    dm.trainer = out["trainer"]
    out["trainer"].training = True
    x_aug, y_aug = dm.on_after_batch_transfer((x.clone(), y), 0)
    assert torch.equal(y_aug, y) and not torch.equal(x_aug, x)
    out["trainer"].training = False
    x_eval, _ = dm.on_after_batch_transfer((x.clone(), y), 0)
    assert torch.equal(x_eval, x)


def test_example_without_regularization_is_the_users_plain_run() -> None:
    out = existing_project.main(["--max-epochs", "1", "--limit-train-batches", "2", "--no-regularization"])
    assert out["callbacks"] == {} and not isinstance(out["datamodule"], AugmentationMixin)
    assert not any(m.__class__.__name__ == "InjectedDropout" for m in out["model"].modules())


# ------------------------------------------------------------------------------------ the user's Hydra app
APP = """
import json, sys
import hydra
from hydra.utils import instantiate
from omegaconf import OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    built = {name: type(instantiate(node)).__name__ for name, node in cfg.callbacks.items()}
    print("RESULT " + json.dumps({"cfg": OmegaConf.to_container(cfg, resolve=True), "built": built}))


main()
"""


def _hydra_app(tmp_path: Path, config: str, *overrides: str) -> dict:
    app = tmp_path / "my_app"
    (app / "conf" / "callbacks").mkdir(parents=True, exist_ok=True)
    (app / "app.py").write_text(APP)
    (app / "conf" / "config.yaml").write_text(textwrap.dedent(config))
    # The app's own callback group option, next to ours.
    (app / "conf" / "callbacks" / "my_checkpoint.yaml").write_text(
        "# @package callbacks.my_checkpoint\n_target_: lightning.pytorch.callbacks.ModelCheckpoint\nmonitor: val/acc\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "app.py",
            "hydra.run.dir=.",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
            *overrides,
        ],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_plugin_finds_our_conf_without_importing_the_package() -> None:
    code = (
        "import sys; from hydra_plugins.lightning_reg_searchpath.searchpath import lightning_reg_conf_dir; "
        "print(lightning_reg_conf_dir()); print('torch' in sys.modules, 'lightning_reg' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO.parent,
    )
    conf, imported = proc.stdout.split("\n")[:2]
    assert Path(conf) == REPO / "conf" and imported == "False False"


@pytest.mark.slow
def test_any_hydra_app_composes_our_callbacks_with_defaults_list_syntax(tmp_path: Path) -> None:
    # 1. A group list in the app's defaults mixes its own options with ours; fields are overridden.
    out = _hydra_app(
        tmp_path,
        """
        defaults:
          - callbacks: [my_checkpoint, l2, early_stopping_restore]
          - _self_
        """,
        "callbacks.l2.l2=0.003",
        "callbacks.early_stopping_restore.patience=7",
    )
    cbs = out["cfg"]["callbacks"]
    assert out["built"] == {
        "my_checkpoint": "ModelCheckpoint",
        "l2": "WeightPenalty",
        "early_stopping_restore": "EarlyStopping",
    }
    assert cbs["l2"]["l2"] == 0.003 and cbs["early_stopping_restore"]["patience"] == 7
    # 2. The command line replaces the list and adds options; absolute entries rename the key.
    out = _hydra_app(
        tmp_path,
        """
        defaults:
          - callbacks: [l2]
          - /callbacks/max_norm@callbacks.constraint
          - _self_
        """,
        "callbacks=[l2,dropout_constant]",
        "+callbacks@callbacks.es=early_stopping",
        "callbacks.constraint.max_norm=2.5",
        "callbacks.es.monitor=val/loss",
        "callbacks.es.mode=min",
    )
    cbs = out["cfg"]["callbacks"]
    assert out["built"] == {
        "l2": "WeightPenalty",
        "dropout_constant": "ScheduledDropout",
        "constraint": "MaxNorm",
        "es": "EarlyStopping",
    }
    assert cbs["constraint"]["max_norm"] == 2.5 and cbs["es"]["monitor"] == "val/loss"


@pytest.mark.slow
def test_our_own_app_is_unaffected_by_the_plugin(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", "--info", "searchpath"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [ln for ln in proc.stdout.splitlines() if "file://" in ln]
    assert len(rows) == 1 and str(REPO / "conf") in rows[0], proc.stdout  # the conf dir once: no duplicate


# ------------------------------------------------------------------------------------------ LightningCLI
def _cli(args: list[str]):
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        existing_project.DigitsClassifier, existing_project.DigitsData, run=False, args=args, save_config_callback=None
    )


CLI_CASES = [
    (
        [
            "--trainer.callbacks+=lightning_reg.WeightPenalty",
            "--trainer.callbacks.l2=1e-4",
            "--trainer.callbacks.mode=decoupled",
            "--trainer.callbacks.include=[Linear]",
        ],
        WeightPenalty,
        lambda cb: cb.spec.l2 == 1e-4 and cb.mode == "decoupled" and cb._include == ["Linear"],
    ),
    (
        ["--trainer.callbacks+=lightning_reg.MaxNorm", "--trainer.callbacks.max_norm=2"],
        MaxNorm,
        lambda cb: cb.max_norm == 2.0,
    ),
    (
        [
            "--trainer.callbacks+=lightning_reg.ScheduledDropout",
            "--trainer.callbacks.schedule={name: early, p: 0.2, cutoff: 3, unit: epoch}",
            "--trainer.callbacks.inject=[ReLU]",
        ],
        ScheduledDropout,
        lambda cb: cb.schedule.at(0, 2) == 0.2 and cb.schedule.at(0, 3) == 0.0 and cb.inject == ["ReLU"],
    ),
    (
        [
            "--trainer.callbacks+=lightning_reg.EarlyStopping",
            "--trainer.callbacks.monitor=val/acc",
            "--trainer.callbacks.mode=auto",
            "--trainer.callbacks.patience=4",
            "--trainer.callbacks.restore_best_weights=true",
        ],
        EarlyStopping,
        lambda cb: cb.mode == "max" and cb.patience == 4 and cb.restore_best_weights is True,
    ),
    (["--trainer.callbacks+=lightning_reg.RNGState"], RNGState, lambda cb: True),
    (
        [
            "--trainer.callbacks+=lightning_reg.AtomicModelCheckpoint",
            "--trainer.callbacks.filename=last",
            "--trainer.callbacks.monitor=null",
        ],
        AtomicModelCheckpoint,
        lambda cb: cb.filename == "last",
    ),
    (["--trainer.callbacks+=lightning_reg.callbacks.MetricsHistory"], MetricsHistory, lambda cb: cb.history == []),
]


@pytest.mark.parametrize(("args", "cls", "configured"), CLI_CASES, ids=[c[1].__name__ for c in CLI_CASES])
def test_every_callback_is_added_and_typed_from_the_command_line(args, cls, configured) -> None:
    cli = _cli(args)
    found = [cb for cb in cli.trainer.callbacks if type(cb) is cls]
    assert len(found) == 1 and configured(found[0])


def test_cli_rejects_a_mistyped_callback_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli(
            [
                "--trainer.callbacks+=lightning_reg.EarlyStopping",
                "--trainer.callbacks.monitor=val/loss",
                "--trainer.callbacks.patience=three",
            ]
        )
    assert "patience" in capsys.readouterr().err


CLI_YAML = """
trainer:
  max_epochs: 3
  limit_train_batches: 3
  accelerator: cpu
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning_reg.WeightPenalty
      init_args:
        l2: 1.0e-4
    - class_path: lightning_reg.MaxNorm
      init_args:
        max_norm: 3.0
    - class_path: lightning_reg.ScheduledDropout
      init_args:
        schedule: {name: linear, start: 0.0, end: 0.2, end_at: 2, unit: epoch}
        inject: [ReLU]
    - class_path: lightning_reg.EarlyStopping
      init_args:
        monitor: val/loss
        patience: 1
        restore_best_weights: true
    - class_path: lightning_reg.RNGState
model:
  hidden: 32
data:
  batch_size: 64
"""


def test_cli_yaml_config_with_every_callback_trains(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CLI_YAML)
    cli = _cli(["--config", str(config), "--trainer.max_epochs=2"])  # the command line still overrides
    pl.seed_everything(0)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    by_type = {type(cb).__name__: cb for cb in cli.trainer.callbacks}
    assert cli.trainer.max_epochs == 2 and cli.model.hparams.hidden == 32
    assert by_type["WeightPenalty"].spec.l2 == 1e-4 and by_type["WeightPenalty"].run_summary()["optimizer_steps"] > 0
    dropout = by_type["ScheduledDropout"].run_summary()
    assert dropout["injected"] and dropout["final_rate"] == 0.1 == by_type["ScheduledDropout"].schedule.at(0, 1)
    assert by_type["EarlyStopping"].run_summary()["checks"] == cli.trainer.current_epoch
    assert by_type["MaxNorm"].run_summary()["optimizer_steps"] == cli.trainer.global_step
