"""User mistakes that used to end in a raw stack trace: each is one ConfigError naming the file or option, what
was expected and what was found, before any training step."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError

from data_factories import make_image_folder, make_mnist

USER_MODULE = '''
import lightning.pytorch as pl
import torch


class Base(pl.LightningModule):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = torch.nn.Linear(64, 10)


class Forwarding(Base):
    """A user's module that forwards everything to a parent that does not take `optimizer`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
'''


def _no_training(tmp_path: Path) -> None:
    assert not (tmp_path / "run" / "checkpoints").exists(), "training started"


def test_a_truncated_mnist_file_is_named(compose_cfg, tmp_path: Path) -> None:
    make_mnist(tmp_path / "data", n_train=60, n_test=20)
    path = tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:5000])
    cfg = compose_cfg("data=mnist", "trainer=debug")
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte is truncated: 5000 bytes, expected 47056"):
        train(cfg)
    _no_training(tmp_path)


def test_a_garbage_mnist_file_is_named(compose_cfg, tmp_path: Path) -> None:
    make_mnist(tmp_path / "data", n_train=60, n_test=20)
    (tmp_path / "data" / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"hello world, not IDX")
    cfg = compose_cfg("data=mnist", "trainer=debug")
    with pytest.raises(ConfigError, match=r"train-labels-idx1-ubyte is not an IDX file"):
        train(cfg)


def test_a_truncated_png_in_an_image_folder_is_named(compose_cfg, tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "images")
    png = sorted((root / "train").rglob("*.png"))[3]
    png.write_bytes(png.read_bytes()[:30])
    cfg = compose_cfg("data=image_folder", f"data.data_dir={root}", "trainer=debug")
    with pytest.raises(ConfigError, match=f"{png} is not a readable image"):
        train(cfg)
    _no_training(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_gpu_accelerator_without_a_gpu_suggests_the_cpu(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("trainer=debug", "trainer.accelerator=gpu")
    with pytest.raises(ConfigError, match=r"`trainer.accelerator` is 'gpu' but no CUDA device is visible.*trainer=cpu"):
        train(cfg)


def test_a_module_forwarding_kwargs_is_told_why_it_got_optimizer(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_mod", None)
    from omegaconf import OmegaConf, open_dict

    cfg = compose_cfg("trainer=debug")
    with open_dict(cfg):
        cfg.model = OmegaConf.create({"_target_": "user_mod.Forwarding"})
    with pytest.raises(
        ConfigError,
        match=r"Forwarding.__init__ takes \*\*kwargs, so the entry point passed "
        r"`optimizer`.*optimizer=null",
    ):
        train(cfg)


def test_a_nan_loss_is_the_stop_reason_when_the_monitor_stays_finite(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "trainer=debug",
        "trainer.max_epochs=6",
        "optimizer.lr=1e12",
        "test=false",
        "callbacks=[default,early_stopping_restore]",
        "callbacks.early_stopping_restore.patience=3",
    )
    summary = train(cfg)
    es = next(v for k, v in summary["callbacks"].items() if k.startswith("EarlyStopping"))
    assert es["reason"] == "loss_non_finite" and es["stopped_epoch"] == 0
    assert "The loss became non-finite" in es["message"] and "val/acc" in es["message"]
    assert summary["status"] == "diverged"


def test_two_dropout_schedulers_on_the_same_modules_are_refused(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("trainer=debug", "model.dropout=0.2", "callbacks=[default,dropout_linear,dropout_constant]")
    with pytest.raises(ConfigError, match="two dropout schedulers drive the same modules.*both schedule net"):
        train(cfg)
    _no_training(tmp_path)


def test_a_run_dir_under_a_regular_file_is_one_line_exit_2(tmp_path: Path) -> None:
    import os
    import subprocess

    (tmp_path / "afile").write_text("not a folder")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", "trainer=debug", f"hydra.run.dir={tmp_path / 'afile' / 'run'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"'{tmp_path / 'afile'}' is a file, not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "sweeper,code,says",
    [
        (
            ["hparams_search=digits_optuna"],
            2,
            "`hydra.sweeper.n_trail` is not an option of hydra/sweeper=lightning_reg_optuna",
        ),
        ([], 1, "Could not override 'hydra.sweeper.n_trail'"),  # Hydra's basic sweeper: Hydra's own message
    ],
)
def test_a_typoed_sweeper_option_is_one_line_in_our_sweeper_only(
    tmp_path: Path, sweeper: list[str], code: int, says: str
) -> None:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_reg.train",
            "-m",
            *sweeper,
            "hydra.sweeper.n_trail=3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr[-2000:]
    assert says in proc.stderr, proc.stderr[-2000:]
    if code == 2:
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert errors == [errors[0]] and "n_trials" in errors[0] and "got n_trail='3'" in errors[0]
    assert not (tmp_path / "sweep").exists()
