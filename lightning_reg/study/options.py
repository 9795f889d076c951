"""The sweeper's options, their defaults and the sampler and pruner presets: each written once, here.

``hydra/sweeper=lightning_reg_optuna`` registers these dataclasses and tables with Hydra
(:mod:`hydra_plugins.lightning_reg_optuna.config`); :func:`lightning_reg.study.setup.check_options` fills a missing
option from the same fields, and :class:`~lightning_reg.study.worker.StudyWorker` takes its defaults from them.
This module imports neither Optuna nor Hydra: Hydra imports every plugin module at start-up, in any app.

The fields are typed ``Any`` on purpose: a wrong value (``n_trials=abc``) must reach our checks, which say in one
line what is allowed, instead of failing in OmegaConf's validation with a traceback. The type each option takes is
in the comment above it and in ``check_options``.
"""

from dataclasses import MISSING as dataclasses_missing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

__all__ = [
    "ConfirmConf",
    "KeysConf",
    "LightningRegOptunaSweeperConf",
    "PRUNER_GROUP",
    "PRUNER_NAMES",
    "SAMPLER_GROUP",
    "SAMPLER_NAMES",
    "default",
    "pruner_presets",
    "sampler_presets",
]


@dataclass
class ConfirmConf:
    """Re-run the ``top_k`` best trials with each of ``seeds`` once the study is done, with ``overrides`` added
    (lightning_reg's own search configs add ``test=true``, so the winners are tested)."""

    top_k: Any = 0
    seeds: list[Any] = field(default_factory=list)
    overrides: list[Any] = field(default_factory=list)


@dataclass
class KeysConf:
    """The task-config keys a fold job or a confirmation job sets: any app's DataModule and seed can take them."""

    fold: Any = "data.fold"
    num_folds: Any = "data.num_folds"
    seed: Any = "seed"


@dataclass
class LightningRegOptunaSweeperConf:
    _target_: str = "hydra_plugins.lightning_reg_optuna.sweeper.LightningRegOptunaSweeper"
    # The sweeper builds the sampler and pruner itself (after checking them), not Hydra.
    _recursive_: bool = False
    # Our presets live in our own groups (hydra/sweeper/lightning_reg_sampler=<name>, .../lightning_reg_pruner=
    # <name>). `sampler: null` keeps Hydra's Optuna sweeper's group hydra/sweeper/sampler selectable (when that
    # plugin is installed): a config written for it, `override /hydra/sweeper/sampler: tpe`, composes as before.
    defaults: list[Any] = field(
        default_factory=lambda: [
            "_self_",
            {"lightning_reg_sampler": "tpe"},
            {"lightning_reg_pruner": "none"},
            {"sampler": None},
        ]
    )

    # Sampler and pruner configs, chosen with hydra/sweeper/lightning_reg_sampler=<name> and
    # hydra/sweeper/lightning_reg_pruner=<name>, or any {_target_: ...} node.
    sampler: Any = None
    pruner: Any = None
    # "minimize" / "maximize", or a list of them for a multi-objective study (optimized_metric a list too).
    direction: Any = "minimize"
    # null: an SQLite file in the sweep directory. Otherwise an SQLAlchemy URL shared by every worker, e.g.
    # postgresql://user:password@host:5432/db (psycopg 3). Keep the password out of the config with
    # ${oc.env:OPTUNA_STORAGE}.
    storage: str | None = None
    # The study every worker joins. Needed with a shared storage; null means "study" in the sweep dir's file.
    study_name: str | None = None
    # Finished trials (complete, pruned, or failed by their job) for the whole study, over all workers.
    n_trials: Any = 20
    # Hydra's key: the sweep fails (exit status 1) once more than this fraction of the trials this worker told
    # failed. Hydra's default is 0.0 (the first failed trial ends the sweep); ours is 1.0 (a failed trial is a
    # result and the search goes on). Either way a sweep that ends with no complete trial exits 1.
    max_failure_rate: Any = 1.0
    # Jobs this worker launches at once (through its launcher); more workers: run the command again.
    n_jobs: Any = 1
    # The search space: key -> choice(...), range(...), interval(...), tag(log, ...), as in Hydra's sweeper.
    params: dict[str, Any] | None = None
    # Hydra's key: the dotted path of a function (cfg, trial) -> None that defines more parameters with the trial
    # API (trial.suggest_float(...)) after the params above are drawn; each becomes a job override too.
    custom_search_space: str | None = None
    # Evaluate every trial over k folds (data.fold=0..k-1, data.num_folds=k), each fold its own job; the
    # trial's value is the mean and pruning acts on the folds' running mean. null: one job per trial.
    folds: Any = None
    confirm: ConfirmConf = field(default_factory=ConfirmConf)
    # The keys `folds` and `confirm` set in each job (checked against the task's config before the study opens).
    keys: KeysConf = field(default_factory=KeysConf)
    # Seconds between heartbeats of a running trial; a trial silent for grace_period (default 2 x interval)
    # is failed and retried up to max_retry times. null turns heartbeats (and retries) off.
    heartbeat_interval: Any = 10
    grace_period: Any = None
    max_retry: Any = 3
    # Seconds between looks at the study while other workers hold the last trials.
    poll_interval: Any = 1.0
    # Seconds a database outage is ridden out (every storage call retried with backoff) before a worker gives up.
    storage_retry: Any = 600


def sampler_presets() -> dict[str, dict[str, Any]]:
    # Every constructor argument of the Optuna class with its default (null: Optuna's own default), so that
    # any of them can be set on the command line: hydra.sweeper.sampler.multivariate=true. An argument this
    # Optuna version lacks is dropped when it is null (lightning_reg.study.setup).
    return {
        "tpe": {
            "_target_": "optuna.samplers.TPESampler",
            "seed": None,
            "consider_prior": None,
            "prior_weight": None,
            "consider_magic_clip": None,
            "consider_endpoints": None,
            "n_startup_trials": 10,
            "n_ei_candidates": 24,
            "multivariate": None,
            "group": False,
            "warn_independent_sampling": None,
            "constant_liar": None,
        },
        "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
        "gp": {
            "_target_": "optuna.samplers.GPSampler",
            "seed": None,
            "n_startup_trials": 10,
            "deterministic_objective": False,
            "warn_independent_sampling": True,
        },
        "cmaes": {
            "_target_": "optuna.samplers.CmaEsSampler",
            "seed": None,
            "x0": None,
            "sigma0": None,
            "n_startup_trials": 1,
            "warn_independent_sampling": True,
            "consider_pruned_trials": False,
            "restart_strategy": None,
            "popsize": None,
            "inc_popsize": None,
            "use_separable_cma": False,
            "with_margin": False,
            "lr_adapt": False,
        },
        # scramble true (Optuna's default is false): an unscrambled Sobol sequence starts at the corner 0.
        "qmc": {
            "_target_": "optuna.samplers.QMCSampler",
            "seed": None,
            "qmc_type": "sobol",
            "scramble": True,
            "warn_asynchronous_seeding": True,
            "warn_independent_sampling": True,
        },
        # search_space null: the grid of the sweep's choice(...) and range(...) params.
        "grid": {"_target_": "lightning_reg.study.engine.GridSamplerAskTell", "seed": None, "search_space": None},
        "nsgaii": {
            "_target_": "optuna.samplers.NSGAIISampler",
            "seed": None,
            "population_size": 50,
            "mutation_prob": None,
            "crossover_prob": 0.9,
            "swapping_prob": 0.5,
        },
    }


def pruner_presets() -> dict[str, dict[str, Any]]:
    return {
        "none": {"_target_": "optuna.pruners.NopPruner"},
        "median": {
            "_target_": "optuna.pruners.MedianPruner",
            "n_startup_trials": 5,
            "n_warmup_steps": 0,
            "interval_steps": 1,
            "n_min_trials": 1,
        },
        "percentile": {
            "_target_": "optuna.pruners.PercentilePruner",
            "percentile": 25.0,
            "n_startup_trials": 5,
            "n_warmup_steps": 0,
            "interval_steps": 1,
            "n_min_trials": 1,
        },
        "successive_halving": {
            "_target_": "optuna.pruners.SuccessiveHalvingPruner",
            "min_resource": "auto",
            "reduction_factor": 4,
            "min_early_stopping_rate": 0,
            "bootstrap_count": 0,
        },
        "hyperband": {
            "_target_": "optuna.pruners.HyperbandPruner",
            "min_resource": 1,
            "max_resource": "auto",
            "reduction_factor": 3,
            "bootstrap_count": 0,
        },
    }


SAMPLER_NAMES = tuple(sampler_presets())
PRUNER_NAMES = tuple(pruner_presets())

#: Our own config groups: hydra/sweeper/sampler and hydra/sweeper/pruner belong to other plugins (Hydra's Optuna
#: sweeper stores its samplers there), and a preset of ours under the same name would replace theirs.
SAMPLER_GROUP = "hydra/sweeper/lightning_reg_sampler"
PRUNER_GROUP = "hydra/sweeper/lightning_reg_pruner"


def default(name: str, conf: type = LightningRegOptunaSweeperConf) -> Any:
    """The default of option ``name`` of ``conf`` (the sweeper's options, :class:`ConfirmConf` or :class:`KeysConf`).

    Example:
        >>> default("poll_interval"), default("n_trials"), default("seed", KeysConf)
        (1.0, 20, 'seed')
    """
    for f in fields(conf):
        if f.name == name:
            value = f.default_factory() if f.default_factory is not dataclasses_missing else f.default
            return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
    raise KeyError(name)
