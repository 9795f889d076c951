"""Hydra's Optuna sweeper plugin tests (facebookresearch/hydra, plugins/hydra_optuna_sweeper/tests), written again
for ``hydra/sweeper=lightning_reg_optuna``: the same example apps and checks, with the sweeper's name switched.

Also switched, because our presets live in our own config group: ``hydra/sweeper/sampler=<name>`` is
``hydra/sweeper/lightning_reg_sampler=<name>`` (Hydra's group is its plugin's, and that plugin, which needs
optuna < 3, is not installed here). Hydra's deprecated ``search_space`` key has no counterpart and is not ported.
Where our behaviour differs on purpose (the default ``max_failure_rate``), the test says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lightning_reg.study.search_space import parse_search_space

REPO = Path(__file__).resolve().parents[2]

# The example app of Hydra's plugin (example/sphere.py and its config), our sweeper named.
SPHERE = """
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def sphere(cfg: DictConfig) -> float:
    x: float = cfg.x
    y: float = cfg.y
    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")
    if cfg.get("fail_above") is not None and x > cfg.fail_above:
        raise RuntimeError(f"x={x} is above {cfg.fail_above}")
    return x**2 + y**2


if __name__ == "__main__":
    sphere()
"""

SPHERE_CONFIG = """
defaults:
  - override hydra/sweeper: lightning_reg_optuna
  - override hydra/sweeper/lightning_reg_sampler: tpe

hydra:
  sweeper:
    sampler:
      seed: 123
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 20
    n_jobs: 1
    params:
      x: range(-5.5, 5.5, step=0.5)
      y: choice(-5, 0, 5)

x: 1
y: 1
z: 1
"""

MULTI_OBJECTIVE = """
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def binh_and_korn(cfg: DictConfig) -> tuple[float, float]:
    x: float = cfg.x
    y: float = cfg.y
    v0 = 4 * x**2 + 4 * y**2
    v1 = (x - 5) ** 2 + (y - 5) ** 2
    return v0, v1


if __name__ == "__main__":
    binh_and_korn()
"""

MULTI_OBJECTIVE_CONFIG = """
defaults:
  - override hydra/sweeper: lightning_reg_optuna
  - override hydra/sweeper/lightning_reg_sampler: nsgaii

hydra:
  sweeper:
    sampler:
      seed: 123
    direction: [minimize, minimize]
    study_name: multi-objective
    storage: null
    n_trials: 20
    n_jobs: 1
    params:
      x: range(0, 5, step=0.5)
      y: range(0, 3, step=0.5)

x: 1
y: 1
"""

CUSTOM = """
import hydra
from omegaconf import DictConfig
from optuna.trial import Trial


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def multi_dimensional_sphere(cfg: DictConfig) -> float:
    w: float = cfg.w
    x: float = cfg.x
    y: float = cfg.y
    z: float = cfg.z
    return w**2 + x**2 + y**2 + z**2


def configure(cfg: DictConfig, trial: Trial) -> None:
    x_value = trial.params["x"]
    trial.suggest_float("z", x_value - cfg.max_z_difference_from_x, x_value + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # note +w here, not w, as w is a new parameter


if __name__ == "__main__":
    multi_dimensional_sphere()
"""

CUSTOM_CONFIG = """
defaults:
  - override hydra/sweeper: lightning_reg_optuna
  - override hydra/sweeper/lightning_reg_sampler: tpe

hydra:
  sweeper:
    sampler:
      seed: 123
    direction: minimize
    study_name: custom-search-space
    storage: null
    n_trials: 20
    n_jobs: 1
    params:
      x: range(-5.5, 5.5, 0.5)
      y: choice(-5, 0, 5)
    custom_search_space: custom_search_space_objective.configure

x: 1
y: 1
z: 100
max_z_difference_from_x: 0.5
"""


def _app(tmp_path: Path, name: str, code: str, config: str) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / f"{name}.py").write_text(code)
    (app / "config.yaml").write_text(config)
    return app / f"{name}.py"


def run(app: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    sweep = tmp_path / "sweep"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(app.parent), str(REPO), os.environ.get("PYTHONPATH", "")] if p),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(app), "--multirun", f"hydra.sweep.dir={sweep}", "hydra.job.chdir=true", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, sweep


def jobs(sweep: Path) -> list[dict]:
    """Each job's overrides, as a dict (the values as the grammar reads them)."""
    parser = OverridesParser.create()
    out = []
    for d in sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        lines = yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
        out.append({o.key_or_group: o.value() for o in parser.parse_overrides(lines)})
    return out


def test_discovery() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.lightning_reg_optuna.sweeper import LightningRegOptunaSweeper

    assert LightningRegOptunaSweeper.__name__ in [x.__name__ for x in Plugins.instance().discover(Sweeper)]


# Hydra's expectations in today's Optuna classes: IntUniformDistribution(a, b) is IntDistribution(a, b),
# UniformDistribution FloatDistribution, LogUniformDistribution FloatDistribution(log=True),
# IntLogUniformDistribution IntDistribution(log=True), DiscreteUniformDistribution(a, b, q) FloatDistribution(step=q).
@pytest.mark.parametrize(
    "input,expected",
    [
        ("key=choice(1,2)", CategoricalDistribution([1, 2])),
        ("key=choice(true, false)", CategoricalDistribution([True, False])),
        ("key=choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
        ("key=shuffle(range(1,3))", CategoricalDistribution((1, 2))),
        ("key=range(1,3)", IntDistribution(1, 3)),
        ("key=interval(1, 5)", FloatDistribution(1, 5)),
        ("key=int(interval(1, 5))", IntDistribution(1, 5)),
        ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
        ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1)),
    ],
)
def test_create_optuna_distribution_from_override(input: str, expected: BaseDistribution) -> None:
    actual = parse_search_space({}, [input]).distributions["key"]
    if isinstance(expected, CategoricalDistribution) and "shuffle" in input:
        assert isinstance(actual, CategoricalDistribution) and set(actual.choices) == set(expected.choices)
    else:
        assert actual == expected


def test_launch_jobs(tmp_path: Path) -> None:
    app = _app(tmp_path, "sphere", SPHERE, SPHERE_CONFIG)
    proc, sweep = run(
        app,
        tmp_path,
        "hydra/sweeper/lightning_reg_sampler=random",
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.n_jobs=3",
        "hydra.sweeper.sampler.seed=123",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(jobs(sweep)) == 8


@pytest.mark.parametrize("with_commandline", (True, False))
def test_optuna_example(with_commandline: bool, tmp_path: Path) -> None:
    app = _app(tmp_path, "sphere", SPHERE, SPHERE_CONFIG)
    args = ["hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=8", "hydra.sweeper.sampler.seed=123"]
    if with_commandline:
        args += ["x=choice(0, 1, 2)", "y=0"]  # y fixed
    proc, sweep = run(app, tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    returns = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert returns["name"] == "optuna"
    values = [j["x"] ** 2 + (j.get("y", 1) if not with_commandline else 0) ** 2 for j in jobs(sweep)]
    assert len(values) == 20
    assert returns["best_value"] == pytest.approx(min(values))
    best = returns["best_params"]
    assert returns["best_value"] == pytest.approx(best["x"] ** 2 + (best["y"] ** 2 if "y" in best else 0))
    if with_commandline:
        assert "y" not in best and best["x"] in (0, 1, 2)
    else:
        assert -5.5 <= best["x"] <= 5.5 and best["y"] in (-5, 0, 5)


def test_optuna_grid_example(tmp_path: Path) -> None:
    app = _app(tmp_path, "sphere", SPHERE, SPHERE_CONFIG)
    proc, sweep = run(
        app,
        tmp_path,
        "hydra/sweeper/lightning_reg_sampler=grid",
        "hydra.sweeper.n_trials=20",  # capped at the grid's 6 points, as Hydra's sweeper does
        "x=choice(-1, 1)",
        "y=range(-1, 2)",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    points = sorted((j["x"], j["y"]) for j in jobs(sweep))
    assert points == [(x, y) for x in (-1, 1) for y in (-1, 0, 1)]  # every grid point once
    returns = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert returns["best_value"] == 1 and returns["best_params"]["y"] == 0


def test_optuna_multi_objective_example(tmp_path: Path) -> None:
    app = _app(tmp_path, "multi_objective", MULTI_OBJECTIVE, MULTI_OBJECTIVE_CONFIG)
    proc, sweep = run(app, tmp_path, "hydra.sweeper.n_trials=20", "hydra.sweeper.n_jobs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    returns = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert returns["name"] == "optuna" and returns["solutions"]

    def values(x: float, y: float) -> tuple[float, float]:
        return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2

    every = [values(j["x"], j["y"]) for j in jobs(sweep)]
    assert len(every) == 20
    for solution in returns["solutions"]:
        v = values(solution["params"]["x"], solution["params"]["y"])
        assert list(v) == pytest.approx(solution["values"])
        # Pareto-optimal: no trial is at least as good in both objectives and better in one.
        assert not any(a <= v[0] and b <= v[1] and (a, b) != v for a, b in every)


def test_optuna_custom_search_space_example(tmp_path: Path) -> None:
    app = _app(tmp_path, "custom_search_space_objective", CUSTOM, CUSTOM_CONFIG)
    proc, sweep = run(app, tmp_path, "hydra.sweeper.n_trials=10", "hydra.sweeper.n_jobs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    returns = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    done = jobs(sweep)
    assert len(done) == 10
    for j in done:
        assert abs(j["z"] - j["x"]) <= 0.5 and 0.0 <= j["w"] <= 1.0  # drawn by configure() for this trial
    best = returns["best_params"]
    assert set(best) == {"x", "y", "z", "+w"}
    assert returns["best_value"] == pytest.approx(sum(best[k] ** 2 for k in best))
    assert returns["best_value"] == pytest.approx(min(sum(j[k] ** 2 for k in ("x", "y", "z", "w")) for j in done))


@pytest.mark.parametrize("max_failure_rate", (0.5, 1.0))
def test_failure_rate(max_failure_rate: float, tmp_path: Path) -> None:
    # Every job fails. Hydra's sweeper exits 1 either way: with max_failure_rate < 1 on the first batch, with 1.0
    # at the end (no trial completed). So does ours, with one line saying which.
    app = _app(tmp_path, "sphere", SPHERE, SPHERE_CONFIG)
    proc, sweep = run(
        app,
        tmp_path,
        "hydra.sweeper.n_trials=20",
        "hydra.sweeper.n_jobs=2",
        "hydra/sweeper/lightning_reg_sampler=random",
        "hydra.sweeper.sampler.seed=123",
        f"hydra.sweeper.max_failure_rate={max_failure_rate}",
        "+error=true",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("lightning_reg: sweep failed")]
    assert "cfg.error is True" in line
    if max_failure_rate < 1.0:
        # Stopped once more than half of n_trials had failed: after 6 batches of 2 (Hydra's stops after one).
        assert "max_failure_rate`=0.5" in line and len(jobs(sweep)) == 12
    else:
        assert "no trial of study 'sphere' completed" in line and len(jobs(sweep)) == 20


@pytest.mark.parametrize("max_failure_rate,status", [(0.4, 1), (0.5, 0)])
def test_failure_rate_counts_the_failed_fraction(max_failure_rate: float, status: int, tmp_path: Path) -> None:
    # Ours, beyond Hydra's test: the jobs with x > 2 fail, 6 of the grid's 12 points (a fraction of 0.5).
    app = _app(tmp_path, "sphere", SPHERE, SPHERE_CONFIG)
    proc, sweep = run(
        app,
        tmp_path,
        "hydra/sweeper/lightning_reg_sampler=grid",
        "x=range(-3, 9)",
        "y=0",
        "hydra.sweeper.n_trials=null",
        f"hydra.sweeper.max_failure_rate={max_failure_rate}",
        "+fail_above=2",
    )
    assert proc.returncode == status, proc.stderr[-3000:]
    n = len(jobs(sweep))
    if status:
        assert n < 12 and "max_failure_rate`=0.4 of n_trials=12" in proc.stderr
    else:
        assert n == 12
