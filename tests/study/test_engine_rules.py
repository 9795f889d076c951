"""The sweep engine's rules, each written once: the attribute table, the option defaults, the preset tables, and
the grid point a surplus trial gives back."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lightning_reg.study import options
from lightning_reg.study.engine import ATTR, GridSamplerAskTell
from lightning_reg.study.jobs import DEFAULT_KEYS, JobOutcome
from lightning_reg.study.search_space import parse_search_space
from lightning_reg.study.setup import check_options
from lightning_reg.study.worker import StudyWorker

REPO = Path(__file__).resolve().parents[2]


def _string_constants(path: Path) -> list[str]:
    return [
        n.value
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def test_every_attribute_key_comes_from_the_table() -> None:
    # A key written as a literal anywhere but in engine.ATTR would be a second spelling of a fact.
    literal = []
    for path in (REPO / "lightning_reg").rglob("*.py"):
        if path.name == "engine.py" and path.parent.name == "study":
            continue
        literal += [
            f"{path.name}: {c}" for c in _string_constants(path) if c.startswith("lightning_reg:") and " " not in c
        ]
    assert literal == []
    assert len(set(ATTR.values())) == len(ATTR)


def test_the_defaults_live_in_the_dataclass_fields_only() -> None:
    checked = check_options({})
    for f in dataclasses.fields(options.LightningRegOptunaSweeperConf):
        if f.name.startswith("_") or f.name in ("defaults", "direction", "study_name", "params", "confirm", "keys"):
            continue
        assert checked[f.name] == options.default(f.name), f.name
    assert checked["keys"] == DEFAULT_KEYS == dataclasses.asdict(options.KeysConf())
    assert checked["confirm"] == dataclasses.asdict(options.ConfirmConf())
    worker = StudyWorker(optuna.create_study(), parse_search_space({"x": "choice(1, 2)"}, []), lambda s: [], n_trials=1)
    assert worker.poll_interval == options.default("poll_interval") == checked["poll_interval"]
    assert worker.max_failure_rate == options.default("max_failure_rate")


def test_one_sampler_and_pruner_table() -> None:
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.lightning_reg_optuna.config  # noqa: F401 - registers the groups from the tables
    import lightning_reg.study.engine as engine

    assert not hasattr(engine, "SAMPLERS") and not hasattr(engine, "PRUNERS")
    stored = ConfigStore.instance().list(options.SAMPLER_GROUP)
    assert sorted(n.removesuffix(".yaml") for n in stored) == sorted(options.SAMPLER_NAMES)
    stored = ConfigStore.instance().list(options.PRUNER_GROUP)
    assert sorted(n.removesuffix(".yaml") for n in stored) == sorted(options.PRUNER_NAMES)


def test_a_grid_point_lost_in_a_race_for_the_last_slot_is_run_when_the_sweep_is_resumed(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = parse_search_space({"x": "choice(1, 2, 3)"}, [])
    grid = {"x": [1, 2, 3]}

    def study() -> optuna.Study:
        return optuna.load_study(study_name="g", storage=storage, sampler=GridSamplerAskTell(grid, seed=0))

    optuna.create_study(study_name="g", storage=storage)
    # Worker A holds the only slot (its trial is running); worker B asks in the same moment and loses the race.
    a = StudyWorker(study(), space, lambda s: [], n_trials=1)
    held = a._ask()
    assert held is not None
    b = StudyWorker(study(), space, lambda s: [], n_trials=1)
    assert b._ask() is None
    lost = [t for t in study().trials if t.user_attrs.get(ATTR["status"]) == "surplus"]
    assert len(lost) == 1 and lost[0].state == TrialState.FAIL
    waiting = [t for t in study().trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["fixed_params"] for t in waiting] == [lost[0].params]
    a.study.tell(held, 0.0)

    # Resumed with the whole grid: every point runs exactly once, the lost one included.
    ran: list[int] = []

    def launch(specs):  # the job's value is its x
        xs = [int(spec.overrides[0].split("=")[1]) for spec in specs]
        ran.extend(xs)
        return [JobOutcome(float(x)) for x in xs]

    StudyWorker(study(), space, launch, n_trials=3).run()
    complete = sorted(t.params["x"] for t in study().trials if t.state == TrialState.COMPLETE)
    assert complete == [1, 2, 3] and sorted([held.params["x"], *ran]) == [1, 2, 3]
