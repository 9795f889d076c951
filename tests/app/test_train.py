"""The Hydra entry point end to end: accuracy, determinism, resume, AMP, DDP, errors and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FAST = [
    "trainer.max_epochs=3",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=3",
    "trainer.enable_progress_bar=false",
]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True, map_location="cpu")["state_dict"]


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_main_job_trains_digits_to_95_percent(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("trainer.enable_progress_bar=false")
    summary = train(cfg)
    assert summary["test"]["test/acc"] >= 0.95, summary["test"]
    assert summary["fit_seconds"] > 0  # recorded; how long it took is a benchmark's business, not a test's
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["test"] == summary["test"]
    assert written["seed"] == 42 and written["status"] == "completed"
    assert written["config"]["model"]["_target_"] == "lightning_reg.models.MLPClassifier"
    assert written["best"]["epoch"] is not None and written["best"]["tested"].endswith(".ckpt")
    assert len(written["history"]) == written["epochs_completed"] == 30
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


def test_same_seed_gives_identical_metrics(compose_cfg, tmp_path: Path) -> None:
    runs = [
        train(compose_cfg(*FAST, f"seed={seed}", output_dir=tmp_path / f"r{i}")) for i, seed in enumerate((7, 7, 8))
    ]
    for key in ("final", "test", "history"):
        assert runs[0][key] == runs[1][key]
    assert runs[0]["final"] != runs[2]["final"]  # the seed really matters


@pytest.mark.oldest_lightning  # the entry point, trained and resumed
def test_resume_ends_where_uninterrupted_run_ends(compose_cfg, tmp_path: Path) -> None:
    common = [
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "optimizer=momentum",
        "scheduler=step",
        "scheduler.scheduler.step_size=2",
    ]
    full = train(compose_cfg(*common, "trainer.max_epochs=4", output_dir=tmp_path / "full"))
    train(compose_cfg(*common, "trainer.max_epochs=2", output_dir=tmp_path / "part"))
    # "part" is finished (it has metrics.json), so its training continues in a new directory.
    resumed = train(
        compose_cfg(
            *common,
            "trainer.max_epochs=4",
            f"ckpt_path={tmp_path / 'part/checkpoints/last.ckpt'}",
            output_dir=tmp_path / "cont",
        )
    )
    a, b = _weights(tmp_path / "full/checkpoints/last.ckpt"), _weights(tmp_path / "cont/checkpoints/last.ckpt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full["final"] == resumed["final"]
    # MetricsHistory came back from the checkpoint. The epoch whose validation wrote last.ckpt (epoch 1)
    # keeps its validation metrics; its train-epoch aggregates cannot be rebuilt after a resume.
    assert len(full["history"]) == len(resumed["history"]) == 4
    for i, (a_row, b_row) in enumerate(zip(full["history"], resumed["history"])):
        if i == 1:
            assert {k: v for k, v in a_row.items() if not k.startswith("train/")} == b_row
        else:
            assert a_row == b_row


def test_bf16_mixed_on_cpu(compose_cfg) -> None:
    summary = train(compose_cfg(*FAST, "trainer.precision=bf16-mixed"))
    assert summary["status"] == "completed"
    assert torch.isfinite(torch.tensor(summary["final"]["train/loss"]))
    assert summary["test"]["test/acc"] > 0.3


def test_torch_threads_sets_the_jobs_cpu_threads(compose_cfg) -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    try:
        summary = train(compose_cfg(*FAST, f"torch_threads={target}"))
        assert summary["status"] == "completed"
        assert torch.get_num_threads() == target  # process-wide, set before the model is built
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("scheduler", ["onecycle", "plateau", "cosine", "multistep"])
def test_schedulers_step_during_training(compose_cfg, scheduler: str) -> None:
    extra = ["scheduler.scheduler.milestones=[1,2]"] if scheduler == "multistep" else []
    cfg = compose_cfg(*FAST, f"scheduler={scheduler}", "callbacks=[default,lr_monitor]", "optimizer=sgd", *extra)
    summary = train(cfg)
    lrs = [row.get("lr-SGD") for row in summary["history"]]
    assert all(lr is not None for lr in lrs)
    if scheduler != "plateau":
        assert len(set(lrs)) > 1, lrs


def test_best_checkpoint_loads_with_weights_only(compose_cfg, tmp_path: Path) -> None:
    summary = train(compose_cfg(*FAST, "model=cnn", "scheduler=cosine"))
    ckpt = torch.load(summary["best"]["checkpoint"], weights_only=True)
    assert "state_dict" in ckpt and ckpt["hyper_parameters"]["conv_channels"] == [16, 32]


def test_any_lightning_module_is_accepted(compose_cfg, caplog) -> None:
    cfg = compose_cfg(*FAST)
    with open_dict(cfg):
        cfg.model = OmegaConf.create({"_target_": "helpers.UserDigitsModule", "hidden": 16})
    summary = train(cfg)
    assert summary["test"]["test/acc"] > 0.2
    assert "configures its own optimizers" in caplog.text  # the unused optimizer group is not silently ignored


def _assert_nothing_trained(out: Path) -> None:
    assert not (out / "checkpoints").exists()
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.train_fraction=1.5"], "`train_fraction` must be a number in the open interval (0, 1); got 1.5"),
        (["data.train_fraction=0.5"], "must equal 1; got 0.5 + 0.2 + 0.2 = 0.9"),
        (["data.val_fraction=0"], "`val_fraction` must be a number in the open interval (0, 1); got 0"),
        (["data.batch_size=???"], "required config value(s) missing: data.batch_size"),
        (["model._target_=torch.nn.Linear"], "must name a LightningModule subclass; got 'torch.nn.Linear'"),
        (
            ["model._target_=no_such_pkg.Model"],
            "must name an importable LightningModule class; got 'no_such_pkg.Model'",
        ),
        (["model.activation=swish"], "model: `activation` must be one of"),
        (
            ["ckpt_path=/nonexistent.ckpt"],
            "`ckpt_path` must be an existing checkpoint file or 'last'; got '/nonexistent.ckpt'",
        ),
        (["trainer.precision=float8"], "trainer:"),
    ],
)
def test_bad_input_is_one_clear_error_before_training(compose_cfg, tmp_path: Path, overrides, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        train(compose_cfg(*overrides))
    assert fragment in str(err.value)
    _assert_nothing_trained(tmp_path / "run")


def test_existing_run_is_not_overwritten(compose_cfg, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"keep": true}')
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        train(compose_cfg(*FAST))
    assert json.loads((out / "metrics.json").read_text()) == {"keep": True}


def test_cli_unknown_group_option_is_a_clear_message(tmp_path: Path) -> None:
    proc = _cli("model=transformer", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'model/transformer'" in proc.stderr
    assert "Available options in 'model'" in proc.stderr and "mlp" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.oldest_lightning
def test_cli_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = _cli("data.test_fraction=0.5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "lightning_reg: error: data: `train_fraction + val_fraction + test_fraction` must equal 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_console_script_is_the_same_entry_point(tmp_path: Path) -> None:
    (ep,) = entry_points(group="console_scripts", name="lightning-reg-train")
    assert ep.value == "lightning_reg.train:main"
    script = Path(sys.executable).parent / "lightning-reg-train"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run(
        [str(script), "--cfg", "job", "model=cnn"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "lightning_reg.models.CNNClassifier" in proc.stdout


@pytest.mark.slow
def test_ddp_cpu_two_processes_from_the_hydra_entry_point(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _cli(
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=4",
        "+trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["status"] == "completed"
    assert metrics["global_step"] == 8  # 2 epochs x 4 batches per rank
    # Rank 1 ran from the parent's resolved job config, in the same run directory.
    assert (run / ".lightning_reg" / "ddp_job_config.yaml").is_file()
    assert (run / "train_ddp_process_1.log").is_file()
    assert "test/acc" in metrics["test"]


def test_users_config_dir_adds_their_own_model(tmp_path: Path) -> None:
    """The README recipe: a user's conf/model/mine.yaml on hydra.searchpath, selected with model=mine."""
    pkg = tmp_path / "my_project"
    (pkg / "conf" / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text((REPO / "tests" / "helpers.py").read_text())
    (pkg / "conf" / "model" / "mine.yaml").write_text("_target_: my_project.models.UserDigitsModule\nhidden: 16\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_reg.train",
            "hydra.searchpath=[file://my_project/conf]",
            "model=mine",
            "trainer=debug",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["model"] == {"_target_": "my_project.models.UserDigitsModule", "hidden": 16}
    assert "optimizer` config group is not used" in proc.stderr + proc.stdout
    # One device: no DDP ranks to start, so no job config is written for them.
    assert not (tmp_path / "run" / ".lightning_reg" / "ddp_job_config.yaml").exists()
