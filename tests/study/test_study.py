"""The sweep engine's parts one by one: the search-space grammar, option checks, the worker loop on a real
SQLite study (several workers as threads), pruning inside a real Trainer, k-fold splits, the study report, and
every bad input the sweeper refuses before a trial starts."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import open_dict
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lightning_reg.app.train import CONF_DIR
from lightning_reg.data import DigitsDataModule
from lightning_reg.data.splits import check_folds, kfold_split
from lightning_reg.errors import ConfigError
from lightning_reg.study.engine import (
    ATTR,
    default_storage_url,
    is_finished,
    mask_url,
    open_storage,
    storage_of,
    trial_id_of,
)
from lightning_reg.study.jobs import JobOutcome, summarize_values
from lightning_reg.study.link import TrialLink, TrialPruning, fold_means
from lightning_reg.study.report import format_study_markdown, load_study_report, sig
from lightning_reg.study.search_space import format_value, parse_search_space
from lightning_reg.study.setup import check_options, open_study
from lightning_reg.study.worker import StudyWorker

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# --------------------------------------------------------------------------- search space


def test_the_hydra_grammar_maps_onto_optuna_distributions() -> None:
    space = parse_search_space(
        {
            "a": "choice(1, 2, 3)",
            "b": "range(2, 10, 4)",
            "c": "interval(0.0, 1.0)",
            "d": "tag(log, interval(1e-4, 1e-1))",
            "e": "int(interval(1, 8))",
            "f": "tag(log, range(1, 9))",
            "g": "x,y",
            "h": "range(0.0, 1.0, 0.25)",
        },
        ["trainer.max_epochs=3", "a=choice(4,5)"],
    )
    d = space.distributions
    assert d["a"] == CategoricalDistribution((4, 5))  # the command line replaced the config's entry
    assert d["b"] == IntDistribution(2, 10, step=4)  # range(2, 10, 4): 2, 6, 10, as Hydra's Optuna sweeper
    assert d["c"] == FloatDistribution(0.0, 1.0)
    assert d["d"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert d["e"] == IntDistribution(1, 8)
    assert d["f"] == IntDistribution(1, 9, log=True)
    assert d["g"] == CategoricalDistribution(("x", "y"))
    assert d["h"] == FloatDistribution(0.0, 1.0, step=0.25)
    assert space.fixed == ["trainer.max_epochs=3"]
    assert space.grid_values["b"] == [2, 6] and space.grid_values["c"] is None


@pytest.mark.parametrize("value", [0.1, 1e-5, 3, -2, True, None, "adam", "a b", "it's", "x=y,z"])
def test_a_sampled_value_survives_the_override_grammar(value: object) -> None:
    (override,) = OverridesParser.create().parse_overrides([f"k={format_value(value)}"])
    assert override.value() == value


@pytest.mark.parametrize(
    "params,match",
    [
        ({"a": "tag(log, choice(1, 2))"}, "applies to interval"),
        ({"a": "range(5, 1)"}, "is empty"),
        ({"a": "interval(2.0, 1.0)"}, "needs low < high"),
        ({"a": "tag(log, interval(0.0, 1.0))"}, "needs low > 0"),
        ({"a": "tag(log, range(1, 10, 2))"}, "needs step 1"),
        ({"a": "choice([1, 2], [3])"}, "must be null, bool, int, float or str"),
    ],
)
def test_a_bad_search_space_names_the_key(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        parse_search_space(params, [])
    assert "hydra.sweeper.params.a" in str(err.value)


def test_the_grid_needs_finite_values() -> None:
    assert parse_search_space({"a": "choice(1, 2)", "b": "range(0, 3)"}, []).grid_size() == 6
    with pytest.raises(ConfigError, match="b is an interval"):
        parse_search_space({"a": "choice(1, 2)", "b": "interval(0, 1.5)"}, []).grid()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options,match",
    [
        ({"n_trials": 0}, r"n_trials` must be an integer in \[1, inf\]; got 0"),
        ({"n_trials": -3}, "n_trials"),
        ({"n_trials": 2.0}, r"n_trials` must be an integer; got 2.0 \(float\)"),
        ({"n_trials": "5"}, "n_trials` must be an integer; got '5'"),
        ({"n_trials": True}, "n_trials` must be an integer; got True"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"direction": "max"}, "direction` must be 'minimize' or 'maximize'.*got 'max'"),
        ({"direction": ["maximize", "up"]}, "got \\['maximize', 'up'\\]"),
        ({"folds": 1}, r"folds` must be an integer in \[2, inf\]; got 1"),
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"confirm": {"top_k": 2, "seeds": []}}, "seeds` is empty"),
        ({"confirm": {"top_k": 1, "seeds": [1, 1]}}, "must not repeat a seed"),
        ({"confirm": {"top_k": 1.5, "seeds": [1]}}, "top_k` must be an integer"),
        ({"confirm": {"top_k": 1, "seeds": "1,2"}}, "list of integer seeds"),
        ({"confirm": {"overrides": "test=true"}}, r"confirm.overrides` must be a list of key=value .*got 'test=true'"),
        ({"confirm": {"overrides": ["test"]}}, r"confirm.overrides` must be a list of key=value .*got \['test'\]"),
        ({"keys": {"fold": ""}}, r"keys.fold` must be the task-config key a job sets \(default 'data.fold'\); got ''"),
        ({"keys": {"seed": "seed=1"}}, r"keys.seed` must be the task-config key .*got 'seed=1'"),
        ({"keys": "data.fold"}, r"keys` must be a mapping of fold, num_folds and seed; got 'data.fold'"),
        ({"storage": 5}, "storage` must be null or a database URL"),
        ({"storage": "postgresql://u:pw@h/db"}, "study_name` must be set.*u:\\*\\*\\*@h"),
        ({"study_name": " "}, "study_name` must be a non-empty string"),
        (
            {"n_trial": 5},
            "`hydra.sweeper.n_trial` is not an option.*options are sampler, pruner, direction.*got n_trial=5",
        ),
        ({"search_space": {"x": {}}}, "search_space` is not an option.*write the same keys under params"),
    ],
)
def test_bad_sweeper_options_are_named(options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_options(options)


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql://sweep:s3cret@db:5432/optuna") == "postgresql://sweep:***@db:5432/optuna"
    assert mask_url("mysql+pymysql://u:p%40ss@h/db") == "mysql+pymysql://u:***@h/db"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(ConfigError, match="sqlite:///path") as err:
        open_storage("not a url, pw=secret")
    assert "must be null" in str(err.value)


# --------------------------------------------------------------------------- bad input before any trial


@pytest.fixture
def sweep_cfg(tmp_path: Path):
    def _compose(*overrides: str):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                "train",
                overrides=["hparams_search=digits_random", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "sweep")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def _open(cfg, arguments=()):  # noqa: ANN001, ANN202
    return open_study(cfg.hydra.sweeper, list(arguments), cfg)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (
            ["hydra.sweeper.sampler._target_=optuna.samplers.NoSuchSampler"],
            "sampler._target_` must name an Optuna sampler",
        ),
        (["hydra.sweeper.sampler._target_=torch.nn.Linear"], "must build an optuna sampler|sampler"),
        (["hydra.sweeper.pruner._target_=optuna.pruners.NoSuchPruner"], "hydra.sweeper.pruner"),
        (["hydra.sweeper.pruner._target_=torch.nn.Identity"], "must build an optuna.pruners.BasePruner.*Identity"),
        (
            ["hydra/sweeper/lightning_reg_pruner=median", "optimized_metric=test/acc"],
            "needs a validation metric.*'test/acc'",
        ),
        (
            ["hydra/sweeper/lightning_reg_pruner=median", "optimized_metric=null"],
            "needs a validation metric.*None",
        ),
        (["optimized_metric=[val/acc,val/loss]"], "optimized_metric` must name 1 metric"),
        (["hydra.sweeper.pruner=median"], "pruner` must be a config node.*lightning_reg_pruner=<name>.*got 'median'"),
        (["hydra.sweeper.sampler=tpe"], r"sampler` must be a config node.*\(tpe, random, gp.*got 'tpe'"),
        (
            [
                "hydra/sweeper/lightning_reg_pruner=median",
                "hydra.sweeper.direction=[maximize,minimize]",
                "optimized_metric=[val/acc,fit_seconds]",
            ],
            "cannot prune a multi-objective study",
        ),
        (["hydra.sweeper.direction=[maximize,minimize]"], "must name 2 metric"),
        (["hydra/sweeper/lightning_reg_sampler=grid"], "interval"),
        (["hydra.sweeper.params=null"], "nothing to search"),
    ],
)
def test_the_sweeper_refuses_bad_input_before_any_trial(
    sweep_cfg, overrides: list[str], match: str, tmp_path: Path
) -> None:
    # "|..." entries are sweep overrides of the command line (the sweeper's `arguments`), not composed.
    cfg = sweep_cfg(*(o for o in overrides if not o.startswith("|")))
    with pytest.raises(ConfigError, match=match):
        _open(cfg, [o[1:] for o in overrides if o.startswith("|")])
    assert not (tmp_path / "sweep" / "0").exists()


def test_the_grid_caps_n_trials_at_its_size_as_hydras_sweeper(sweep_cfg) -> None:
    # This used to be refused ("n_trials is 20 but the grid has 4 points"); Hydra's Optuna sweeper caps it.
    cfg = sweep_cfg("hydra/sweeper/lightning_reg_sampler=grid")
    plan = _open(cfg, ["optimizer.lr=choice(0.1,0.01)", "model.dropout=choice(0.0,0.5)", "data.batch_size=64"])
    assert cfg.hydra.sweeper.n_trials == 20 and plan.options["n_trials"] == 4


def test_an_unknown_sampler_or_pruner_name_lists_the_choices(sweep_cfg) -> None:
    for group in ("sampler", "pruner"):
        with pytest.raises(MissingConfigException, match=f"hydra/sweeper/lightning_reg_{group}/nope"):
            sweep_cfg(f"hydra/sweeper/lightning_reg_{group}=nope")


def test_a_study_with_another_direction_is_refused(sweep_cfg, tmp_path: Path) -> None:
    url = default_storage_url(tmp_path / "sweep")
    (tmp_path / "sweep").mkdir()
    optuna.create_study(study_name="digits_random", storage=url, direction="minimize")
    with pytest.raises(ConfigError, match="exists with direction \\['minimize'\\].*asks for \\['maximize'\\]"):
        _open(sweep_cfg())


def test_every_sampler_and_pruner_config_composes_and_builds(sweep_cfg) -> None:
    from lightning_reg.study.options import PRUNER_NAMES, SAMPLER_NAMES

    for name in SAMPLER_NAMES:
        grid = ["optimizer.lr=choice(0.1,0.01)", "model.dropout=0.0", "data.batch_size=64"] if name == "grid" else []
        cfg = sweep_cfg(
            f"hydra/sweeper/lightning_reg_sampler={name}",
            "hydra.sweeper.sampler.seed=3",
            f"hydra.sweeper.study_name=s_{name}",
            *(["hydra.sweeper.n_trials=2"] if grid else []),
        )
        plan = _open(cfg, grid)
        assert type(plan.study.sampler).__name__.lower().startswith(name.replace("nsgaii", "nsgaii")[:3]), name
    for name in PRUNER_NAMES:
        plan = _open(sweep_cfg(f"hydra/sweeper/lightning_reg_pruner={name}", "hydra.sweeper.study_name=p_" + name))
        assert plan.prune == (name != "none")
        assert type(plan.study.pruner).__module__.startswith("optuna.pruners")


def test_a_resumed_worker_does_not_replay_the_seeded_draws(sweep_cfg) -> None:
    first = _open(sweep_cfg())
    t = first.study.ask(first.space.distributions)
    first.study.tell(t, 0.5)
    second = _open(sweep_cfg())
    assert second.study.ask(second.space.distributions).params != t.params


# --------------------------------------------------------------------------- the worker loop


def _study(tmp_path: Path, name: str = "w", **kw) -> optuna.Study:
    storage = open_storage(default_storage_url(tmp_path), heartbeat_interval=kw.pop("heartbeat_interval", None))
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True, **kw)


def test_four_workers_on_one_study_finish_exactly_n_trials(tmp_path: Path) -> None:
    space = parse_search_space({"x": "interval(0.0, 1.0)"}, [])
    seen: list[str] = []
    lock = threading.Lock()

    def launch(specs):  # noqa: ANN001, ANN202 - stands in for a launcher: the job's value is its x
        with lock:
            seen.extend(s.subdir for s in specs)
        return [JobOutcome(float(s.overrides[0].split("=")[1])) for s in specs]

    def work() -> None:
        study = _study(tmp_path, sampler=optuna.samplers.RandomSampler(seed=0))
        StudyWorker(study, space, launch, n_trials=12, n_jobs=2, monitor="x", poll_interval=0.05).run()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    trials = _study(tmp_path).get_trials()
    finished = [t for t in trials if is_finished(t)]
    assert len(finished) == 12 and len(seen) == 12 and len(set(seen)) == 12
    assert {str(t.number) for t in finished} == set(seen)  # every finished trial ran once; nothing else ran
    assert all(t.user_attrs[ATTR["status"]] == "surplus" for t in trials if t not in finished)
    # Four workers with the same seed: the duplicate draws were detected and redrawn.
    assert len({t.params["x"] for t in finished}) == 12


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_one_seeded_worker_is_reproducible(tmp_path: Path, sampler: str) -> None:
    # A discrete space, so the sampler draws points again: those are this worker's own, never "another
    # worker's" (issue #24: trial 6 was failed as a duplicate and the sampler reseeded at random).
    space = parse_search_space({"p": "range(0.0, 0.5, 0.1)", "b": "choice(32, 64, 128)"}, [])

    def launch(specs):  # noqa: ANN001, ANN202 - a deterministic task function of the trial's overrides
        kv = [dict(o.split("=") for o in s.overrides) for s in specs]
        return [JobOutcome(round(float(k["p"]) - int(k["b"]) / 1000, 6)) for k in kv]

    def run(where: Path) -> list[dict]:
        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        kw = {"n_startup_trials": 3} if sampler == "tpe" else {}
        study = _study(where, sampler=samplers[sampler](seed=123, **kw))
        StudyWorker(study, space, launch, n_trials=12).run()
        assert all(t.state != TrialState.FAIL for t in study.trials)  # nothing failed as a "duplicate"
        return [t.params for t in study.trials]

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second and len(first) == 12
    assert len({tuple(sorted(p.items())) for p in first}) < 12  # the sampler did repeat a point


def test_a_failed_job_counts_as_a_finished_failed_trial(tmp_path: Path) -> None:
    study = _study(tmp_path, direction="maximize")
    space = parse_search_space({"x": "choice(1, 2)"}, [])
    outcomes = iter([JobOutcome(None, failed=True, error="RuntimeError: boom"), JobOutcome(0.5)])
    told = StudyWorker(study, space, lambda specs: [next(outcomes)], n_trials=2, monitor="val/acc").run()
    assert [t.state for t in told] == [TrialState.FAIL, TrialState.COMPLETE]
    assert told[0].user_attrs[ATTR["status"]] == "failed" and is_finished(told[0])


def test_fold_means_and_value_summaries() -> None:
    assert fold_means({0: [0.2, 0.4], 1: [0.4], 2: []}) == {0: 0.3, 1: 0.4}
    assert fold_means({0: [0.2, 0.4, 0.9]}, upto=1) == {0: 0.2, 1: 0.4}
    assert summarize_values([1.0, 3.0, float("nan")]) == {"mean": 2.0, "std": 1.4142, "n": 2}


# --------------------------------------------------------------------------- pruning inside a real Trainer


def _trainer_with(cb, max_epochs: int = 4):  # noqa: ANN001, ANN202
    import lightning.pytorch as pl

    from lightning_reg.models import MLPClassifier

    model = MLPClassifier(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=(16,))
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
    )
    return model, trainer


def test_trial_pruning_reports_each_epoch_and_stops_the_trainer(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    trial = study.ask()
    link = TrialLink("p", trial_id_of(trial), trial.number, "val/acc", "maximize", prune=True, storage=url)
    cb = TrialPruning(link, pruner=optuna.pruners.ThresholdPruner(lower=1.1, n_warmup_steps=1), storage_url=url)
    model, trainer = _trainer_with(cb)
    # The fit ends in optuna.TrialPruned, the job's return that says "pruned" (the one channel of its outcome).
    with pytest.raises(optuna.TrialPruned, match="trial 0 pruned after epoch 1"):
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert cb.pruned_epoch == 1 and trainer.current_epoch == 2
    frozen = storage_of(study).get_trial(trial_id_of(trial))
    assert sorted(frozen.intermediate_values) == [0, 1]
    assert frozen.intermediate_values[1] == pytest.approx(cb.reported[1])


DDP_PRUNED = """
import os
import lightning.pytorch as pl
import optuna
from lightning_reg.data import DigitsDataModule
from lightning_reg.models import MLPClassifier
from lightning_reg.study.engine import trial_id_of
from lightning_reg.study.link import TrialLink, TrialPruning

url = f"sqlite:///{OUT / 'study.db'}"
if "LOCAL_RANK" not in os.environ:  # rank 0, before Lightning starts rank 1 (which runs this script again)
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    trial = study.ask()
    link = TrialLink("p", trial_id_of(trial), trial.number, "val/acc", "maximize", prune=True, storage=url)
    (OUT / "link.json").write_text(link.to_json())
link = TrialLink.from_json((OUT / "link.json").read_text())
cb = TrialPruning(link, pruner=optuna.pruners.ThresholdPruner(lower=1.1, n_warmup_steps=1), storage_url=url)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=4, limit_train_batches=2,
                     limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=[cb])
try:
    trainer.fit(MLPClassifier(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=(16,)),
                datamodule=DigitsDataModule(batch_size=32))
    outcome = "returned"
except optuna.TrialPruned as err:
    outcome = f"raised: {err}"
(OUT / f"rank{trainer.global_rank}.txt").write_text(f"{outcome}; epoch {trainer.current_epoch}")
"""


@pytest.mark.slow
def test_under_ddp_every_rank_of_a_pruned_fit_raises_so_none_goes_on_alone(tmp_path: Path) -> None:
    from helpers import run_ddp_script

    run_ddp_script(DDP_PRUNED, tmp_path)
    said = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert said == ["raised: trial 0 pruned after epoch 1; epoch 2"] * 2, said
    frozen = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'study.db'}").trials[0]
    assert sorted(frozen.intermediate_values) == [0, 1]  # rank 0 reported; the decision reached both ranks


def test_an_app_that_records_the_outcome_itself_takes_the_raise_over(tmp_path: Path) -> None:
    # lightning_reg's entry point sets raise_pruned=False, writes metrics.json, then raises TrialPruned itself.
    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="p", storage=url, direction="maximize")
    trial = study.ask()
    link = TrialLink("p", trial_id_of(trial), trial.number, "val/acc", "maximize", prune=True, storage=url)
    cb = TrialPruning(link, pruner=optuna.pruners.ThresholdPruner(lower=1.1, n_warmup_steps=0), storage_url=url)
    cb.raise_pruned = False
    model, trainer = _trainer_with(cb)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert cb.pruned_epoch == 0 and trainer.current_epoch == 1
    assert "pruned after epoch 0" in str(cb.pruned_error())
    frozen = storage_of(study).get_trial(trial_id_of(trial))
    # The job wrote its reports and its set-up (max_epochs), no outcome: the sweeper tells from the return.
    assert frozen.state == TrialState.RUNNING and frozen.user_attrs == {ATTR["max_epochs"]: 4}
    assert sorted(frozen.intermediate_values) == [0]


def test_a_monitor_the_job_does_not_log_fails_before_any_step(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="p", storage=url)
    trial = study.ask()
    link = TrialLink("p", trial_id_of(trial), trial.number, "val/accuracy", "maximize", prune=True, storage=url)
    model, trainer = _trainer_with(TrialPruning(link, pruner=optuna.pruners.MedianPruner(), storage_url=url))
    with pytest.raises(ConfigError, match="'val/accuracy' is not among the metrics.*val/acc"):
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert trainer.global_step == 0


def test_a_trial_link_needs_a_monitor_and_valid_json() -> None:
    with pytest.raises(ConfigError, match="optimized_metric"):
        TrialPruning(TrialLink("s", 0, 0, None, "maximize", prune=True))
    with pytest.raises(ConfigError, match="LIGHTNING_REG_TRIAL"):
        TrialLink.from_json('{"study": 1')


def test_optuna_internals_we_read_are_still_there(tmp_path: Path) -> None:
    """Canary: `Trial._trial_id` and `Study._storage` are Optuna-private; these fail with a clear message."""
    study = optuna.create_study()
    trial = study.ask()
    assert isinstance(trial_id_of(trial), int) and isinstance(trial_id_of(study.trials[0]), int)
    assert storage_of(study) is study._storage


# --------------------------------------------------------------------------- k-fold


def test_kfold_parts_are_disjoint_stratified_and_cover_everything() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 7)
    vals = [kfold_split(y, 5, i, seed=3) for i in range(5)]
    allval = torch.cat([v for _, v in vals])
    assert sorted(allval.tolist()) == list(range(87))
    for tr, va in vals:
        assert not set(tr.tolist()) & set(va.tolist()) and len(tr) + len(va) == 87
        assert abs(int((y[va] == 1).sum()) - 6) <= 1
    assert torch.equal(kfold_split(y, 5, 2, seed=3)[1], vals[2][1])  # seeded
    for fold, k, match in [(None, 3, "go together"), (3, 3, r"\[0, 2\]"), (0, 1, "≥ 2"), (0.0, 2, "integer")]:
        with pytest.raises(ConfigError, match=match):
            check_folds(fold, k)


def test_digits_folds_validate_on_disjoint_parts_and_keep_the_test_set() -> None:
    parts = []
    for i in range(3):
        dm = DigitsDataModule(fold=i, num_folds=3)
        dm.setup("fit")
        parts.append(dm)
    vals = [set(map(tuple, dm.data_val.tensors[0].flatten(1).tolist())) for dm in parts]
    assert not (vals[0] & vals[1]) and not (vals[1] & vals[2])
    assert all(torch.equal(parts[0].data_test.tensors[0], dm.data_test.tensors[0]) for dm in parts)
    plain = DigitsDataModule()
    plain.setup("fit")
    assert sum(len(v) for v in vals) == len(plain.data_train) + len(plain.data_val)


# --------------------------------------------------------------------------- the study report


def test_the_study_report_ranks_by_validation_and_counts_pruning_savings(tmp_path: Path) -> None:
    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="r", storage=url, direction="maximize")
    study.set_user_attr("lightning_reg:optimized_metric", "val/acc")
    dist = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for value, state in [(0.5, "complete"), (0.9, "complete"), (0.2, "pruned")]:
        t = study.ask(dist)
        t.set_user_attr(ATTR["max_epochs"], 10)
        t.set_user_attr(ATTR["epochs"], 10 if state == "complete" else 2)
        if state == "pruned":
            t.report(value, 1)
            t.set_user_attr(ATTR["pruned_epoch"], 1)
            study.tell(t, state=TrialState.PRUNED)
        else:
            study.tell(t, value)
    rep = load_study_report(url, "r")
    assert [r.number for r in rep.ranked] == [1, 0, 2]
    assert (rep.epochs_spent, rep.epochs_unpruned) == (22, 30)
    md = format_study_markdown(rep)
    assert "2 complete, 1 pruned" in md and "27% saved by pruning" in md
    assert "| 1 | 1 | complete | 0.9000 |" in md and "| 3 | 2 | pruned | 0.2000 | 2 | 1 |" in md
    from lightning_reg.app.report import main

    assert main(["--storage", url, "--study", "r", "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    assert (tmp_path / "out" / "report.md").read_text() == md
    assert main(["--storage", url, "--study", "nope", "--out", str(tmp_path / "o2")]) == 2


def test_labels_round_to_significant_digits() -> None:
    assert [sig(0.25154158265390486), sig(1e-05), sig(64), sig(float("nan"))] == ["0.252", "1e-05", "64", "nan"]


def test_the_study_report_draws_optunas_importance_and_pareto_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import optuna

    from lightning_reg.study.report import load_study_report, write_study_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    one = optuna.create_study(study_name="one", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    one.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2 + t.suggest_float("y", 0, 1), n_trials=8)
    two = optuna.create_study(
        study_name="two",
        storage=url,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    two.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("x2", 0, 1) + t.params["x"]), n_trials=8)
    for name, expected, absent in (
        ("one", "param_importances.png", "pareto_front.png"),
        ("two", "pareto_front.png", "param_importances.png"),
    ):
        out = tmp_path / name
        out.mkdir()
        write_study_report(load_study_report(url, name), out)
        assert (out / expected).stat().st_size > 1000 and not (out / absent).exists(), sorted(os.listdir(out))


def test_sweeper_config_instantiates_through_hydra(sweep_cfg) -> None:
    cfg = sweep_cfg()
    sweeper = instantiate(cfg.hydra.sweeper)
    assert type(sweeper).__name__ == "LightningRegOptunaSweeper"
    assert sweeper.options["sampler"]["_target_"] == "optuna.samplers.RandomSampler"


def test_early_stopping_still_stops_a_trial_that_is_not_pruned(tmp_path: Path) -> None:
    from lightning_reg import EarlyStopping

    url = default_storage_url(tmp_path)
    study = optuna.create_study(study_name="es", storage=url, direction="maximize")
    trial = study.ask()
    link = TrialLink("es", trial_id_of(trial), trial.number, "val/acc", "maximize", prune=True, storage=url)
    pruning = TrialPruning(link, pruner=optuna.pruners.NopPruner(), storage_url=url)
    # An impossible target: early stopping fires after `patience` epochs without improvement.
    stop = EarlyStopping(monitor="val/acc", mode="max", patience=1, min_delta=1.0, restore_best_weights=True)
    model, trainer = _trainer_with(pruning, max_epochs=20)
    trainer.callbacks.append(stop)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert pruning.pruned_epoch is None and trainer.current_epoch < 20 and stop.stopped_epoch > 0
    frozen = storage_of(study).get_trial(trial_id_of(trial))
    assert sorted(frozen.intermediate_values) == list(range(trainer.current_epoch))  # reported every epoch


def test_image_datamodules_take_folds(tmp_path: Path) -> None:
    from lightning_reg.data import MNISTDataModule

    from data_factories import make_mnist

    make_mnist(tmp_path, n_train=90, n_test=30)
    vals, trains = [], []
    for i in range(3):
        dm = MNISTDataModule(data_dir=str(tmp_path), fold=i, num_folds=3)
        dm.setup("fit")
        vals.append(dm.data_val.y)
        trains.append(len(dm.data_train.y))
    assert [len(v) for v in vals] == [30, 30, 30] and trains == [60, 60, 60]
    assert torch.equal(torch.sort(torch.cat(vals)).values, torch.sort(dm.load_split(train=True)[1]).values)
    with pytest.raises(ConfigError, match="fold"):
        MNISTDataModule(data_dir=str(tmp_path), fold=3, num_folds=3)


def test_a_password_in_the_config_is_masked_in_metrics_json(compose_cfg, tmp_path: Path) -> None:
    from lightning_reg.app.train import train
    from lightning_reg.errors import mask_secrets

    assert mask_secrets("x mysql+pymysql://u:p4ss@h/db y") == "x mysql+pymysql://u:***@h/db y"
    cfg = compose_cfg("trainer=debug", "test=false", "+notes=postgresql://sweep:hunter2@db:5432/optuna")
    train(cfg)
    text = (Path(cfg.paths.output_dir) / "metrics.json").read_text()
    assert "hunter2" not in text and "postgresql://sweep:***@db:5432/optuna" in text


def test_a_result_for_a_trial_another_worker_failed_is_dropped_not_crashed(tmp_path: Path) -> None:
    study = _study(tmp_path, direction="maximize")
    space = parse_search_space({"x": "interval(0.0, 1.0)"}, [])

    def launch(specs):  # noqa: ANN001, ANN202 - while the job "runs", another worker fails its trial
        for s in specs:
            storage_of(study).set_trial_state_values(s.link.trial_id, state=TrialState.FAIL)
        return [JobOutcome(0.5) for _ in specs]

    worker = StudyWorker(study, space, launch, n_trials=1, monitor="val/acc", poll_interval=0.01)
    calls = {"n": 0}
    original = worker.launch

    def once(specs):  # noqa: ANN001, ANN202 - the first trial is failed under it; the next one runs normally
        calls["n"] += 1
        return original(specs) if calls["n"] == 1 else [JobOutcome(0.7) for _ in specs]

    worker.launch = once
    told = worker.run()
    assert [t.value for t in told] == [0.7]
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
