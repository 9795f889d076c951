"""The examples in examples/ run as users run them (shortened by their own flags) and do what they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))


def test_timm_vit_on_mnist_schedules_drop_path_with_ema_and_early_stopping(mnist_root: Path, capsys) -> None:
    pytest.importorskip("timm")
    import timm_vit_mnist

    out = timm_vit_mnist.main(
        ["--data-dir", str(mnist_root), "--max-epochs", "2", "--train-subset", "512", "--limit-batches", "4"]
    )
    # depth 4: timm gives block 0 no DropPath; blocks 1-3 have two each, at 0.1 * b / 3 (the schedule's end).
    assert out["rates"] == pytest.approx([0.0333, 0.0333, 0.0667, 0.0667, 0.1, 0.1], abs=1e-4)
    assert 0.0 <= out["test/acc"] <= 1.0 and out["epochs"] == 2
    assert "drop-path rates at the end" in capsys.readouterr().out


def test_hf_text_classifier_learns_with_penalty_and_scheduled_dropout(capsys) -> None:
    pytest.importorskip("transformers")
    import hf_text_classifier

    out = hf_text_classifier.main(["--max-epochs", "3", "--n", "1024"])
    assert out["rates"] == [0.2]  # every Dropout, hidden and attention, at the schedule's end
    assert out["optimizer_steps"] == 3 * 16 and out["penalized_tensors"] == 14  # Linear kernels only
    assert out["val_acc"] > 0.5  # three classes: chance is 1/3
    assert "penalized 14 tensors" in capsys.readouterr().out


# ------------------------------------------------------------------ examples/main.py: LightningCLI, via subprocess
SHORT = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.enable_progress_bar=false"]


def _main_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("LOCAL_RANK", None)
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "main.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_main_py_fits_and_tests_with_the_documented_flags(tmp_path: Path) -> None:
    pytest.importorskip("jsonargparse")
    proc = _main_py(
        "fit",
        *SHORT,
        # docs/dropin.md's command (the README's, plus ScheduledDropout), as written there.
        "--trainer.callbacks+=lightning_reg.WeightPenalty",
        "--trainer.callbacks.l2=1e-4",
        "--trainer.callbacks+=lightning_reg.ScheduledDropout",
        "--trainer.callbacks.schedule={name: early, p: 0.2, cutoff: 3, unit: epoch}",
        "--trainer.callbacks.inject=[ReLU]",
        "--trainer.callbacks+=lightning_reg.EarlyStopping",
        "--trainer.callbacks.monitor=val/loss",
        "--trainer.callbacks.restore_best_weights=true",
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "WeightPenalty(l1=0.0, l2=0.0001, mode='gradient'): penalizing 3 tensors" in out
    assert "ScheduledDropout: injected nn.Dropout after 2 module(s) of type [ReLU]" in out
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in out
    assert "litlogger" not in out and "LeafSpec" not in out  # the same targeted filters as the Hydra entry point
    saved = (tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text()
    assert "class_path: lightning_reg.EarlyStopping" in saved and "restore_best_weights: true" in saved
    (ckpt,) = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    tested = _main_py("test", f"--ckpt_path={ckpt}", "--trainer.enable_progress_bar=false", cwd=tmp_path)
    assert tested.returncode == 0, (tested.stdout + tested.stderr)[-4000:]
    acc = re.search(r"test/acc\s*│\s*([0-9.]+)", tested.stdout)
    assert acc and 0.0 <= float(acc.group(1)) <= 1.0, tested.stdout[-2000:]


def test_main_py_trains_every_callback_from_the_shipped_yaml(tmp_path: Path) -> None:
    pytest.importorskip("jsonargparse")
    proc = _main_py("fit", "--config", str(REPO / "examples" / "main_config.yaml"), *SHORT, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for line in (
        "ScheduledDropout: injected nn.Dropout after 2 module(s) of type [ReLU]: net.2, net.4.",
        "WeightPenalty(l1=0.0, l2=0.0001, mode='gradient'): penalizing 3 tensors",
        "MaxNorm(max_norm=3.0): constraining 3 tensors",
    ):
        assert line in out, out[-4000:]
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    state = torch.load(checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    assert any("EarlyStopping" in key for key in state["callbacks"]) and any(
        "RNGState" in k for k in state["callbacks"]
    )


def test_main_py_refuses_a_mistyped_callback_argument_before_training(tmp_path: Path) -> None:
    pytest.importorskip("jsonargparse")
    proc = _main_py(
        "fit",
        "--trainer.callbacks+=lightning_reg.EarlyStopping",
        "--trainer.callbacks.monitor=val/loss",
        "--trainer.callbacks.patience=three",
        cwd=tmp_path,
    )
    assert proc.returncode != 0 and "patience" in proc.stderr and "three" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "lightning_logs").exists()  # nothing was built or written
