"""Every benchmark runs end to end in --quick mode (a few steps) and writes the JSON it promises.

Subprocesses: the benchmarks set process-wide state (torch threads, log levels, warning filters), and the
suite is meant to be run as ``python -m benchmarks.<name>``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO


def run_bench(name: str, tmp_path: Path, *extra: str, timeout: int = 240) -> tuple[list[str], dict]:
    out = tmp_path / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--quick", "--json-out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio"), lines[-5:]
    assert f"JSON: {out}" in lines
    data = json.loads(out.read_text())
    assert data["benchmark"] == name and data["machine"]["nproc"] >= 1
    return lines, data


def positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_callback_overhead_quick_on_generated_data(tmp_path: Path) -> None:
    lines, data = run_bench("callback_overhead", tmp_path, "--data-dir", str(tmp_path / "absent"))
    assert any(line.startswith("data: generated MNIST-shaped data") for line in lines)
    assert [
        row.split("|")[1].strip() for row in lines if row.startswith("| bare") or row.startswith("| callbacks")
    ] == ["bare", "callbacks"]
    assert data["step"]["bare"]["ratio_median"] == 1.0 and positive(data["ratio_step_median"])
    assert positive(data["ratio_step_fastest"]) and positive(data["ratio_epoch_median"])
    # Each callback's hooks were timed; MaxNorm and WeightPenalty act on every step.
    assert data["hooks"]["breakdown_ms"]["MaxNorm step"] > 0 and data["hooks"]["breakdown_ms"]["WeightPenalty step"] > 0
    # The fresh-process RSS peak sees at least the gradients and momentum buffers of 1.4M float32 weights (11 MB).
    for case in ("bare", "callbacks"):
        assert data["memory"][case]["peak_added_mb"] > 8, data["memory"]


def test_real_models_quick(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    lines, data = run_bench("real_models", tmp_path)
    models = data["models"]
    assert set(models) == {"vit", "resnet18"}
    assert [row.split("|")[2].strip() for row in lines if row.startswith("| resnet18")] == [
        "bare",
        "callbacks",
        "callbacks_sd",
        "sam",
    ]
    for name, m in models.items():
        # The ratios are measured and written; how large they are is the benchmark's finding, not a test's.
        assert m["bare"]["ratio_median"] == 1.0
        cases = ("callbacks", "sam") + (("callbacks_sd",) if name == "resnet18" else ())
        assert all(positive(m[case]["ratio_median"]) for case in cases), (name, m)
        assert m["hooks_ms"]["WeightPenalty step"] > 0 and m["hooks_ms"]["MaxNorm step"] > 0
    # The raw-math rows use the callbacks' own selections: the ResNet's kernels are nearly all of its 11.2M weights.
    assert 11.0 < models["resnet18"]["raw_math_ms"]["penalized_millions"] < 11.2
    assert "ScheduledDropout step" in models["vit"]["hooks_ms"]
    assert "StochasticDepth step" in models["resnet18"]["hooks_ms"]


def test_floor_quick(tmp_path: Path) -> None:
    lines, data = run_bench("floor", tmp_path)
    assert data["steps"] == 4 and data["n_train"] == 6300  # 90% of 7000 images, real or generated
    assert data["ratios"]["hand"] == 1.0
    assert all(positive(data["ratios"][f]) for f in ("resident", "loader", "bare_resident", "bare_loader"))
    assert "resident" in lines[-1] and "loader" in lines[-1]


def test_augment_throughput_quick(tmp_path: Path) -> None:
    lines, data = run_bench("augment_throughput", tmp_path, "--workers", "0", "--batch", "64")
    by = {(r["preset"], r["shape"].split()[0]): r for r in data["results"]}
    presets = ("keras_seed", "randaugment", "trivialaugment", "augmix", "mixup")
    assert set(by) == {(p, s) for p in presets for s in ("MNIST", "CIFAR")}
    for r in by.values():  # the policies run batched on the device path too
        assert positive(r["cpu_best"]) and positive(r["device_best"]) and positive(r["ratio"])
    assert lines[-1].startswith("ratio device/cpu: MNIST keras_seed")


@pytest.mark.slow
def test_sweep_parallelism_quick(tmp_path: Path) -> None:
    lines, data = run_bench("sweep_parallelism", tmp_path)
    assert data["runs_per_launch"] == 2
    assert [(launch["launcher"], launch["completed"]) for launch in data["launches"]] == [("joblib", 2), ("basic", 2)]
    assert positive(data["ratio_joblib_to_basic"])


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_cifar_cnn_quick(tmp_path: Path, precision: str) -> None:
    lines, data = run_bench("cifar_cnn", tmp_path, "--precision", precision)
    assert data["steps"] == 3 and data["n_train"] == 800  # 80% of 1000 generated images, read by CIFAR10DataModule
    assert data["ratios"]["hand"] == 1.0 and data["args"]["precision"] == precision
    assert all(
        positive(data["ratios"][f]) and positive(data["images_per_s"][f]) for f in ("hand", "resident", "loader")
    )
    assert "resident" in lines[-1] and "loader" in lines[-1]


def test_instruction_count_dumps_are_read_by_region(tmp_path: Path) -> None:
    """callback_overhead's callgrind figures come from these dumps (one per region, in dump order); outside
    valgrind the client requests are no-ops, so the marked code runs natively."""
    sys.path.insert(0, str(REPO))
    from benchmarks import instructions

    for i, (name, total) in enumerate(
        [("r0 bare gap", 10), ("r0 callbacks gap", 7), ("r0 callbacks hook MaxNorm", 5), ("r0 callbacks gap", 3)],
        start=1,
    ):
        (tmp_path / f"cg.123.{i}").write_text(
            f"version: 1\ndesc: Trigger: Client Request: {name}\nevents: Ir\nsummary: {total}\ntotals: {total}\n"
        )
    (tmp_path / "cg.123").write_text("desc: Trigger: Program termination\ntotals: 0\n")
    assert instructions.read_counts(tmp_path) == {
        "r0 bare gap": [10],
        "r0 callbacks gap": [7, 3],
        "r0 callbacks hook MaxNorm": [5],
    }
    if instructions.available() is None:
        assert not instructions.running_on_valgrind()
        with instructions.region("native"):
            x = sum(range(10))
        assert x == 45


def test_keras_parity_quick(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("keras") is None:  # not imported here: it would pick its default (TensorFlow) backend
        pytest.skip('keras>=3.15 is not installed (pip install -e ".[parity]")')
    lines, data = run_bench("keras_parity", tmp_path)
    assert data["seeds"] == [1] and data["epochs"] == 1
    for variant in ("baseline", "l1"):
        for side in ("keras", "ours"):
            (run,) = data["results"][variant][side]
            assert 0.0 <= run["test_acc"] <= 1.0
        assert positive(data["ratios"][variant])
    assert any(line.startswith("| baseline") for line in lines)


def test_sweep_scale_quick(tmp_path: Path) -> None:
    lines, data = run_bench("sweep_scale", tmp_path)
    rows = {(r["backend"], r["workers"]) for r in data["results"]}
    assert ("sqlite", 2) in rows
    assert ("postgres", 2) in rows or any(s.startswith("postgres:") for s in data["skipped"])
    for r in data["results"]:
        # Every trial was run and told once by the real workers; the figures are measured, not judged here.
        assert r["told"] == r["n_trials"] == 6 and positive(r["ideal_per_min"])
        # Two workers may both ask for the last slot: the later ask is failed as surplus, never run nor told.
        assert r["latency"]["ask"]["n"] >= 6 and r["latency"]["tell"]["n"] == 6
        assert r["statements_per_trial"]["ask"] > 0 and r["statements_per_trial"]["tell"] > 0


@pytest.mark.slow
def test_sweep_pruning_quick_against_a_plain_optuna_script(tmp_path: Path) -> None:
    pytest.importorskip("optuna_integration", reason='pip install "lightning-reg[bench]" (optuna-integration)')
    lines, data = run_bench("sweep_pruning", tmp_path, "--parts", "plain")
    summary = data["plain"]["summary"]
    assert set(summary) == {"plain", "plain_durable", "ours"}
    for case in ("plain", "plain_durable", "ours"):
        (run,) = data["plain"]["runs"][case]
        # Three trials of at most 2 epochs each, every one trained; the wall time is split into measured phases.
        assert 3 <= run["epochs"] <= 6 and sum(run["states"].values()) == 3
        assert 0.0 <= run["best_value"] <= 1.0 and positive(run["phases"]["fit_s"])
    assert "job_before_log_s" in data["plain"]["runs"]["ours"][0]["phases"]
    assert positive(data["plain"]["wall_ratio_ours_to_plain"])
    assert positive(data["plain"]["wall_ratio_ours_to_plain_durable"])
