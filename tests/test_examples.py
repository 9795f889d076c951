"""The examples in examples/ run as users run them (shortened by their own flags) and do what they say."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
