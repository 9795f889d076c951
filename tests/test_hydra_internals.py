"""The private Hydra names in ``lightning_reg/_hydra_internals.py``, and its loader against Hydra's own.

:class:`~lightning_reg._hydra_internals.ComposeOnceLoader` repeats Hydra's composition steps and keeps the
config composed from the defaults list. These tests compose the same jobs with it and with Hydra's own
``ConfigLoaderImpl`` on the installed Hydra and compare what each job gets: content, ``hydra.overrides``,
``hydra.runtime``, ``override_dirname``, the struct flag, and the errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lightning_reg._hydra_internals import ComposeOnceLoader, compose_once
from lightning_reg.app.train import CONF_DIR

pytestmark = pytest.mark.oldest_lightning


def _moved(what: str, where: str) -> str:
    return f"private internal {what} is gone from {where} in Hydra {hydra.__version__}; update lightning_reg/_hydra_internals.py"


def test_every_private_hydra_name_the_loader_calls_is_there() -> None:
    import hydra._internal.config_loader_impl as impl
    import hydra._internal.defaults_list as defaults_list

    for name in (
        "_parse_overrides_and_create_caching_repo",
        "_compose_config_from_defaults_list",
        "_apply_overrides_to_config",
        "ensure_main_config_source_available",
        "validate_sweep_overrides_legal",
    ):
        assert hasattr(impl.ConfigLoaderImpl, name), _moved(f"`ConfigLoaderImpl.{name}`", impl.__name__)
    assert hasattr(impl, "get_overrides_dirname"), _moved("`get_overrides_dirname`", impl.__name__)
    for name in ("Overrides", "create_defaults_list"):
        assert hasattr(defaults_list, name), _moved(f"`{name}`", defaults_list.__name__)
    assert hasattr(defaults_list.Overrides(repo=None, overrides_list=[]), "config_overrides"), _moved(  # type: ignore[arg-type]
        "`Overrides.config_overrides`", defaults_list.__name__
    )


@pytest.fixture
def loader() -> Iterator[Any]:
    """Hydra's own loader for conf/ (what Hydra hands a sweeper)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def _master(loader: Any, *overrides: str) -> DictConfig:
    return loader.load_configuration(  # type: ignore[no-any-return]
        config_name="train", overrides=list(overrides), run_mode=RunMode.MULTIRUN
    )


def _seen(cfg: DictConfig) -> tuple[Any, ...]:
    """What a job can see of its config: content (unresolved), hydra's fields, the root flags."""
    return (
        OmegaConf.to_yaml(cfg, resolve=False),
        OmegaConf.is_struct(cfg),
        OmegaConf.is_readonly(cfg),
        OmegaConf.is_readonly(cfg.hydra),
        str(cfg.hydra.job.override_dirname),
        list(cfg.hydra.overrides.task),
    )


JOBS = [
    # a trial of the digits search, as the sweeper launches it
    [
        "optimizer.lr=0.001",
        "model.dropout=0.1",
        "data.batch_size=64",
        "hydra.sweep.subdir=0",
        '++hydra.job.env_set.LIGHTNING_REG_TRIAL=\'{"study": "s", "trial_id": 1}\'',
    ],
    # the next trial: other values, the same config groups (reuses the composition)
    ["optimizer.lr=0.0002", "model.dropout=0.4", "data.batch_size=128", "hydra.sweep.subdir=1"],
    # a config group picked per job: composed once per option
    ["optimizer=sgd", "optimizer.lr=0.05", "hydra.sweep.subdir=2"],
    ["optimizer=sgd", "optimizer.lr=0.07", "hydra.sweep.subdir=3"],
    ["optimizer=adam", "optimizer.lr=0.003", "hydra.sweep.subdir=4"],
    # adding, force-adding, deleting, lists, dicts, interpolations, quoted strings, env_copy
    ["+trainer.new_key=3", "++seed=7", "~trainer.max_epochs", "hydra.sweep.subdir=5"],
    ["trainer.devices=[0]", "+extra={a: 1, b: [2, 3]}", "task_name='x y'", "hydra.sweep.subdir=6"],
    ["seed=${optimizer.lr}", "hydra.job.env_copy=[HOME]", "hydra.sweep.subdir=7"],
    ["hydra/launcher=basic", "callbacks=[default,l2]", "hydra.sweep.subdir=8"],
]


@pytest.mark.parametrize("search", [[], ["hparams_search=digits_optuna"]])
def test_every_job_gets_the_config_hydra_gives_it(loader: Any, search: list[str]) -> None:
    master = _master(loader, *search)
    ours = ComposeOnceLoader(loader)
    for job in JOBS:
        theirs = loader.load_sweep_config(master, list(job))
        mine = ours.load_sweep_config(master, list(job))
        assert _seen(mine) == _seen(theirs), job
    # One composition per distinct choice of config groups: the trials, sgd, adam again, the deletion job's own
    # (a value deletion is a value override: it reuses), the launcher/callbacks job.
    assert (ours.composed, ours.reused) == (4, len(JOBS) - 4)
    assert ours.enabled


def test_jobs_do_not_share_nodes(loader: Any) -> None:
    """A job that changes its config in place changes no other job's config."""
    master = _master(loader)
    ours = ComposeOnceLoader(loader)
    for lr in (0.001, 0.002):  # composed, then reused
        job = ours.load_sweep_config(master, [f"optimizer.lr={lr}"])
        OmegaConf.set_struct(job, False)
        job.optimizer.betas = [0.0, 0.0]
        job.model.hidden = "changed"
    third = ours.load_sweep_config(master, ["model.dropout=0.3"])
    assert ours.reused == 2
    assert list(third.optimizer.betas) != [0.0, 0.0]
    assert third.model.get("hidden") != "changed"
    assert third.model.dropout == 0.3


@pytest.mark.parametrize(
    "job",
    [["optimizer.no_such_key=1"], ["optimizer=no_such_option"], ["+seed=1"], ["optimizer.lr=choice(1,2)"]],
)
def test_a_bad_job_fails_as_hydra_fails(loader: Any, job: list[str]) -> None:
    master = _master(loader)
    ours = ComposeOnceLoader(loader)
    ours.load_sweep_config(master, ["optimizer.lr=0.001"])  # a kept composition exists
    with pytest.raises(Exception) as theirs:
        loader.load_sweep_config(master, job)
    with pytest.raises(type(theirs.value)) as mine:
        ours.load_sweep_config(master, job)
    assert str(mine.value) == str(theirs.value)


def test_a_composition_that_differs_from_hydras_hands_every_job_back_to_hydra(
    loader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    master = _master(loader)
    ours = ComposeOnceLoader(loader)
    ours.load_sweep_config(master, ["optimizer.lr=0.001"])
    (kept, _, _) = next(iter(ours._memo.values()))
    kept.seed = 12345  # what a Hydra that composes differently would give
    with caplog.at_level(logging.WARNING, logger="lightning_reg.study"):
        cfg = ours.load_sweep_config(master, ["optimizer.lr=0.002"])
    assert cfg.seed == 42 and not ours.enabled
    assert "composes a job differently" in caplog.text
    ours.load_sweep_config(master, ["optimizer.lr=0.003"])
    assert ours.reused == 1  # the one checked; none after


def test_a_file_edited_mid_sweep_reaches_only_new_group_choices(tmp_path: Path) -> None:
    """The documented difference: the jobs of a sweep train the config the sweep composed first."""
    (tmp_path / "opt").mkdir()
    (tmp_path / "main.yaml").write_text("defaults:\n  - opt: a\n  - _self_\nseed: 1\n")
    (tmp_path / "opt" / "a.yaml").write_text("lr: 0.1\n")
    (tmp_path / "opt" / "b.yaml").write_text("lr: 0.2\n")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        inner = GlobalHydra.instance().config_loader()
        master = inner.load_configuration(config_name="main", overrides=[], run_mode=RunMode.MULTIRUN)
        ours = compose_once(inner)
        assert isinstance(ours, ComposeOnceLoader)
        assert ours.load_sweep_config(master, ["seed=2"]).opt.lr == 0.1
        assert ours.load_sweep_config(master, ["seed=3"]).opt.lr == 0.1  # the first reuse, checked against Hydra
        (tmp_path / "opt" / "a.yaml").write_text("lr: 0.5\n")
        (tmp_path / "opt" / "b.yaml").write_text("lr: 0.6\n")
        assert ours.load_sweep_config(master, ["seed=4"]).opt.lr == 0.1  # kept: the sweep's first composition
        assert inner.load_sweep_config(master, ["seed=4"]).opt.lr == 0.5  # Hydra reads the file again
        assert ours.load_sweep_config(master, ["opt=b"]).opt.lr == 0.6  # a new choice is composed now
    GlobalHydra.instance().clear()


def test_compose_once_leaves_other_loaders_alone() -> None:
    other = object()
    assert compose_once(other) is other
