"""A study is opened only if it is THE study: an empty, damaged or foreign SQLite file is refused before anything
is written, and a worker joining a study through a shared storage must have its direction, objective and search
space (recorded in the study when it was created). Real SQLite files and real Optuna studies."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from lightning_reg.app.train import CONF_DIR
from lightning_reg.errors import ConfigError
from lightning_reg.study.setup import SPACE_ATTR, open_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sweep(tmp_path: Path):
    def _open(sweep_dir: Path, *overrides: str, arguments: tuple[str, ...] = ()):  # noqa: ANN202
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                "train",
                overrides=["hparams_search=digits_random", f"hydra.sweep.dir={sweep_dir}", *overrides],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(sweep_dir)
        return open_study(cfg.hydra.sweeper, list(arguments), cfg)

    yield _open
    GlobalHydra.instance().clear()


def _other_tables(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE results (x REAL)")
    con.commit()
    con.close()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.touch(), r"is an empty file \(0 bytes\), not an Optuna study"),
        (lambda p: p.write_bytes(b"not a database at all " * 200), "is not a readable SQLite database"),
        (_other_tables, r"without Optuna's table\(s\) studies, trials, version_info"),
    ],
    ids=["empty", "damaged", "foreign"],
)
def test_a_file_that_is_not_the_study_is_refused_before_anything_is_written(sweep, tmp_path: Path, make, match) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    db = sweep_dir / "optuna.db"
    make(db)
    before = db.read_bytes()
    with pytest.raises(ConfigError, match=match) as err:
        sweep(sweep_dir)
    assert "fresh hydra.sweep.dir" in str(err.value) and "\n" not in str(err.value)
    assert db.read_bytes() == before  # nothing written into it
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["optuna.db"]


def test_a_zero_byte_optuna_db_stops_the_command_with_one_line(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "optuna.db").touch()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_reg.train",
            "-m",
            "hparams_search=digits_random",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode != 0
    assert "is an empty file (0 bytes), not an Optuna study" in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert (sweep_dir / "optuna.db").stat().st_size == 0
    assert not (sweep_dir / "0").exists()


def test_a_joining_worker_with_another_space_or_objective_is_refused(sweep, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    shared = [f"hydra.sweeper.storage={url}"]
    first = sweep(tmp_path / "a", *shared)
    recorded = first.study.user_attrs[SPACE_ATTR]
    assert sorted(recorded) == sorted(first.space.distributions)

    # The same sweep from another directory joins the study.
    again = sweep(tmp_path / "b", *shared)
    assert again.study._study_id == first.study._study_id

    with pytest.raises(ConfigError, match=r"another search space \(model.dropout: FloatDistribution") as err:
        sweep(tmp_path / "c", *shared, arguments=("model.dropout=interval(0.0,0.9)",))
    assert "another hydra.sweeper.study_name" in str(err.value)
    with pytest.raises(ConfigError, match="trainer.max_epochs: new in this sweep"):
        sweep(tmp_path / "d", *shared, arguments=("trainer.max_epochs=choice(3,5)",))
    with pytest.raises(ConfigError, match="optimizes optimized_metric='val/acc'; this sweep optimizes 'val/loss'"):
        sweep(tmp_path / "e", *shared, "optimized_metric=val/loss", "hydra.sweeper.direction=maximize")
    for refused in "cde":
        assert not (tmp_path / refused).exists()  # refused before anything was written
    study = optuna.load_study(study_name=first.study_name, storage=url)
    assert study.user_attrs[SPACE_ATTR] == recorded  # and the study is as it was
