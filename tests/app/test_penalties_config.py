"""Hydra configs for the penalty callbacks: composed, instantiated, run through the entry point; benchmark smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightning_reg import MaxNorm, WeightPenalty
from lightning_reg.app.train import train
from lightning_reg.core.schedules import Linear
from lightning_reg.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

EXPECTED = {
    "l1": (WeightPenalty, {"mode": "gradient"}, {"l1": 1e-5, "l2": 0.0}),
    "l2": (WeightPenalty, {"mode": "gradient"}, {"l1": 0.0, "l2": 1e-4}),
    "elastic": (WeightPenalty, {"mode": "gradient"}, {"l1": 1e-5, "l2": 1e-4}),
    "proximal_l1": (WeightPenalty, {"mode": "proximal"}, {"l1": 1e-4, "l2": 0.0}),
    "decoupled": (WeightPenalty, {"mode": "decoupled"}, {"l1": 0.0, "l2": 5e-3}),
    "max_norm": (MaxNorm, {"max_norm": 3.0}, {}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_config_composes_and_instantiates(compose_cfg, name):
    cfg = compose_cfg(f"callbacks=[default,{name}]")
    assert set(cfg.callbacks) == {"model_checkpoint", "last_checkpoint", name}
    callback = instantiate(cfg.callbacks[name], _convert_="all")
    cls, attrs, coefs = EXPECTED[name]
    assert type(callback) is cls
    for key, value in attrs.items():
        assert getattr(callback, key) == value
    for key, value in coefs.items():
        assert getattr(callback.spec, key) == value


def test_groups_and_schedule_from_the_command_line(compose_cfg):
    cfg = compose_cfg(
        "callbacks=[default,l2]",
        "callbacks.l2.groups={net.5.*: {l2: 1e-3}}",
        "callbacks.l2.schedule={name: linear, start: 0.0, end: 1.0, end_at: 500}",
        "callbacks.l2.exclude=[Embedding, '*.bias']",
    )
    callback = instantiate(cfg.callbacks.l2, _convert_="all")
    assert callback.spec.groups == {"net.5.*": {"l2": 1e-3}}
    assert isinstance(callback.spec.schedule, Linear) and callback.spec.scale_at(250, 0) == 0.5
    assert callback.spec.exclude.globs == ("*.bias",)


def test_fast_run_through_the_entry_point_writes_summaries(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "trainer=debug",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "callbacks=[default,l2,proximal_l1,max_norm]",
        "callbacks.l2.l2=1e-3",
        "callbacks.proximal_l1.l1=0.05",
        "callbacks.max_norm.max_norm=1.0",
    )
    summary = train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    reports = metrics["callbacks"]
    l2 = next(v for k, v in reports.items() if k.startswith("WeightPenalty") and "'mode': 'gradient'" in k)
    prox = next(v for k, v in reports.items() if "'mode': 'proximal'" in k)
    maxnorm = next(v for k, v in reports.items() if k.startswith("MaxNorm"))
    steps = summary["global_step"]
    assert steps == 6  # trainer=debug: 2 epochs x 3 batches
    assert l2["l2"] == 1e-3 and l2["penalized_tensors"] == 3 and l2["optimizer_steps"] == steps
    assert l2["final_l2"] > 0
    assert prox["final_l1_zero_frac"] > 0  # lr·l1 = 5e-3 per step zeroes some small weights
    assert maxnorm["final_max_unit_norm"] <= 1.0 + 1e-6


def test_bad_config_value_is_a_config_error_naming_the_key(compose_cfg):
    cfg = compose_cfg("trainer=debug", "callbacks=[default,l2]", "callbacks.l2.mode=sparse")
    with pytest.raises(ConfigError, match="callbacks.l2: `mode` must be one of 'gradient', 'proximal', 'decoupled'"):
        train(cfg)
    cfg = compose_cfg("trainer=debug", "callbacks=[default,max_norm]", "callbacks.max_norm.include=[Conv2d]")
    with pytest.raises(ConfigError, match="MaxNorm: the parameter selection .* matches no parameter of MLPClassifier"):
        train(cfg)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow
def test_multirun_over_the_coefficient(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_reg.train",
            "-m",
            "trainer=debug",
            "logger=none",
            "test=false",
            "callbacks=[default,l2]",
            "callbacks.l2.l2=0.0,1e-2",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(tmp_path.glob("*/metrics.json"))
    assert len(runs) == 2
    coefs = []
    for path in runs:
        metrics = json.loads(path.read_text())
        assert metrics["status"] == "completed"
        report = next(v for k, v in metrics["callbacks"].items() if k.startswith("WeightPenalty"))
        coefs.append(report["l2"])
        assert OmegaConf.create(metrics["config"]).callbacks.l2.l2 == report["l2"]
    assert sorted(coefs) == [0.0, 1e-2]


def test_benchmark_quick_mode_runs_and_reports_ratios():
    # A subprocess: the benchmark sets process-wide state (torch threads, log levels, warning filters).
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "penalty_overhead.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tail = proc.stdout.strip().splitlines()[-4:]
    assert [line.split()[0] for line in tail] == ["bare", "WeightPenalty(l2)", "penalty-in-loss", "weight_decay"]
    assert all("x bare" in line for line in tail)
    ratios = {line.split()[0]: float(line.split("x bare")[0].split()[-1]) for line in tail}
    assert ratios["bare"] == 1.0 and all(r > 0 for r in ratios.values())
