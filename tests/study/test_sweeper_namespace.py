"""Installing lightning_reg leaves other sweepers' configs as they were (issue #24, item 1).

hydra-optuna-sweeper (1.3.0, the last release) requires optuna < 3 and cannot be installed beside our Optuna, so
the app below stores the configs that plugin stores, the way it stores them: its sweeper ``hydra/sweeper=optuna``
and its samplers in the group ``hydra/sweeper/sampler`` (fields as in its ``config.py``; ``qmc`` as on Hydra's
main branch). Our presets live in ``hydra/sweeper/lightning_reg_sampler`` and ``.../lightning_reg_pruner``;
with both plugins present, each composes its own configs, and our sweeper also takes theirs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

APP = """
from dataclasses import dataclass, field
from typing import Any, List, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPE:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class Random:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class Grid:
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True


@dataclass
class QMC:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class OptunaSweeper:
    _target_: str = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])
    sampler: Any = MISSING
    direction: Any = "minimize"
    n_trials: int = 20
    max_failure_rate: float = 0.0
    params: Optional[Any] = None


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="optuna", node=OptunaSweeper, provider="optuna_sweeper")
for name, node in {"tpe": TPE, "random": Random, "grid": Grid, "qmc": QMC}.items():
    cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider="optuna_sweeper")
cs.store(name="config", node={"x": 0.0, "y": 0})


@hydra.main(version_base="1.3", config_path=None, config_name="config")
def main(cfg) -> float:
    return float((cfg.x - 2) ** 2 + cfg.y)


if __name__ == "__main__":
    main()
"""


def run_app(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    app = tmp_path / "app.py"
    if not app.exists():
        app.write_text(APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(app), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )


def sweeper_cfg(tmp_path: Path, *args: str) -> dict:
    proc = run_app(tmp_path, *args, "--cfg", "hydra", "--package", "hydra.sweeper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout.split("\n", 1)[1])  # after the "# @package hydra.sweeper" line


def test_we_store_nothing_in_another_plugins_groups() -> None:
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.lightning_reg_optuna.config  # noqa: F401 - registers our groups
    from lightning_reg.study import options

    listing = ConfigStore.instance().list("hydra/sweeper")
    assert "sampler" not in listing and "pruner" not in listing, listing
    assert {"lightning_reg_sampler", "lightning_reg_pruner", "lightning_reg_optuna.yaml"} <= set(listing)
    assert options.SAMPLER_GROUP == "hydra/sweeper/lightning_reg_sampler"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["hydra/sweeper/sampler=grid"], {"_target_": "optuna.samplers.GridSampler", "_partial_": True}),
        (
            ["hydra/sweeper/sampler=qmc"],
            {"_target_": "optuna.samplers.QMCSampler", "seed": None, "qmc_type": "sobol", "scramble": False},
        ),
        (
            ["hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.multivariate=true"],
            {
                "_target_": "optuna.samplers.TPESampler",
                "seed": None,
                "n_startup_trials": 10,
                "n_ei_candidates": 24,
                "multivariate": True,
            },
        ),
    ],
)
def test_hydras_optuna_sweeper_composes_its_own_samplers_with_us_installed(
    tmp_path: Path, args: list[str], expected: dict
) -> None:
    assert sweeper_cfg(tmp_path, "hydra/sweeper=optuna", *args)["sampler"] == expected


def test_our_presets_are_in_our_own_groups(tmp_path: Path) -> None:
    cfg = sweeper_cfg(
        tmp_path,
        "hydra/sweeper=lightning_reg_optuna",
        "hydra/sweeper/lightning_reg_sampler=qmc",
        "hydra/sweeper/lightning_reg_pruner=median",
        "hydra.sweeper.sampler.seed=4",
    )
    assert cfg["sampler"]["_target_"] == "optuna.samplers.QMCSampler" and cfg["sampler"]["seed"] == 4
    assert cfg["pruner"]["_target_"] == "optuna.pruners.MedianPruner"
    # The other plugin's group is still theirs: its name does not resolve to one of our presets.
    proc = run_app(tmp_path, "hydra/sweeper=lightning_reg_optuna", "hydra/sweeper/sampler=nsgaii", "--cfg", "hydra")
    assert proc.returncode != 0 and "hydra/sweeper/sampler/nsgaii" in proc.stderr


def sweep(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "sweep"
    proc = run_app(tmp_path, "-m", "hydra/sweeper=lightning_reg_optuna", f"hydra.sweep.dir={out}", *args)
    return proc, out


def test_our_sweeper_runs_hydras_sampler_configs(tmp_path: Path) -> None:
    # A config written for Hydra's sweeper keeps its `hydra/sweeper/sampler=...` line; only hydra/sweeper changes.
    proc, out = sweep(
        tmp_path,
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.n_trials=3",
        "x=interval(0,4)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampler RandomSampler" in proc.stdout + proc.stderr
    assert yaml.safe_load((out / "optimization_results.yaml").read_text())["name"] == "optuna"

    grid = tmp_path / "grid"
    grid.mkdir()
    proc, out = sweep(grid, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=3", "x=choice(0,1,2)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampler GridSamplerAskTell" in proc.stdout + proc.stderr
    assert sorted(yaml.safe_load((p / ".hydra/overrides.yaml").read_text())[0] for p in out.glob("[0-9]*")) == [
        "x=0",
        "x=1",
        "x=2",
    ]


def test_our_tpe_takes_multivariate_from_the_command_line(tmp_path: Path) -> None:
    proc, out = sweep(
        tmp_path,
        "hydra/sweeper/lightning_reg_sampler=tpe",
        "hydra.sweeper.sampler.multivariate=true",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.n_trials=3",
        "x=interval(0,4)",
        "y=range(0,3)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampler TPESampler" in proc.stdout + proc.stderr


def test_a_leftover_hydra_optuna_target_is_one_line(tmp_path: Path) -> None:
    # The check is our app's (its multirun callback runs before Hydra instantiates the sweeper class); in another
    # app Hydra itself reports the class it cannot find (docs/sweeps.md).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_reg.train",
            "-m",
            "hparams_search=digits_random",
            "hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "remove the `_target_` line" in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "sweep" / "0").exists()


@pytest.mark.parametrize(
    "args,says",
    [
        (
            ["hydra.sweeper.pruner=median", "x=interval(0,4)"],
            ["`hydra.sweeper.pruner`", "lightning_reg_pruner=<name>", "median, percentile", "got 'median'"],
        ),
        (["xq=interval(0,4)"], ["`hydra.sweeper.params.xq`", "no key 'xq'", "did you mean 'x'", "got 'xq=0.0'"]),
        (["x=interval(0.5, 0.1)"], ["`hydra.sweeper.params.x`", "needs low < high", "got 0.5, 0.1"]),
        (["x=tag(log, interval(0, 1))"], ["`hydra.sweeper.params.x`", "needs low > 0", "got 0"]),
        (
            ["hydra.sweeper.direction=max", "x=interval(0,4)"],
            ["`hydra.sweeper.direction`", "'minimize' or 'maximize'", "got 'max'"],
        ),
        (
            ["hydra.sweeper.max_failure_rate=2", "x=interval(0,4)"],
            ["`hydra.sweeper.max_failure_rate`", "[0.0, 1.0]", "got 2"],
        ),
        (
            ["hydra.sweeper.custom_search_space=nope.fn", "x=interval(0,4)"],
            ["`hydra.sweeper.custom_search_space`", "got 'nope.fn'"],
        ),
    ],
)
def test_bad_sweep_input_is_one_line_before_any_trial(tmp_path: Path, args: list[str], says: list[str]) -> None:
    proc, out = sweep(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("lightning_reg: error: "), proc.stderr[-3000:]
    assert all(s in errors[0] for s in says), errors[0]
    assert "Traceback" not in proc.stderr and not (out / "0").exists()
