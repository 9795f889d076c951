"""Everything the sweeper checks and opens before the first trial: options, search space, storage, study.

Every mistake here is a :class:`~lightning_reg.errors.ConfigError` raised before any job starts: an unknown
sampler or pruner target, an unreachable storage (named with its password masked), a study that exists with
another direction, ``n_trials`` ≤ 0, or a pruner on a search whose jobs report no metric.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from lightning_reg.atomic import atomic_write, write_text
from lightning_reg.errors import ConfigError, check_int, check_range
from lightning_reg.study.confirm import SweepFailed
from lightning_reg.study.engine import ATTR, build_pruner, default_storage_url, finished_trials, mask_url, open_storage
from lightning_reg.study.identity import METRIC_ATTR, SPACE_ATTR, _check_same_study, _space_record
from lightning_reg.study.nodes import node_rank
from lightning_reg.study.options import (
    PRUNER_GROUP,
    PRUNER_NAMES,
    ConfirmConf,
    KeysConf,
    LightningRegOptunaSweeperConf,
    default,
)
from lightning_reg.study.samplers import _build_sampler, _check_node, _is_grid, resolve_sampler_node
from lightning_reg.study.search_space import SearchSpace, parse_search_space
from lightning_reg.study.worker import StudyWorker

__all__ = ["StudyPlan", "check_options", "job_probes", "open_study", "resolve_sampler_node"]

log = logging.getLogger("lightning_reg.study")

_DIRECTIONS = ("minimize", "maximize")


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the sweeper's options; return them as plain values with defaults filled in.

    Example:
        >>> opts = check_options({"direction": "maximize", "n_trials": 5})
        >>> opts["directions"], opts["n_trials"], opts["n_jobs"]
        (['maximize'], 5, 1)
        >>> check_options({"n_trials": 0})
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `hydra.sweeper.n_trials` must be an integer in [1, inf]; got 0.
    """
    import dataclasses

    allowed = [f.name for f in dataclasses.fields(LightningRegOptunaSweeperConf) if not f.name.startswith("_")]
    defaults = {name: default(name) for name in allowed if name != "defaults"}
    for key in options:
        if key not in allowed and not str(key).startswith("_"):
            hint = (
                " (Hydra's deprecated search_space: write the same keys under params)" if key == "search_space" else ""
            )
            raise ConfigError(
                f"`hydra.sweeper.{key}` is not an option of hydra/sweeper=lightning_reg_optuna{hint}; the options are "
                f"{', '.join(a for a in allowed if a != 'defaults')}; got {key}={_plain(options[key])!r}."
            )
    o = {**defaults, **{k: _plain(v) for k, v in options.items()}}
    direction = o["direction"]
    directions = list(direction) if isinstance(direction, (list, tuple)) else [direction]
    for d in directions:
        if d not in _DIRECTIONS:
            raise ConfigError(
                f"`hydra.sweeper.direction` must be 'minimize' or 'maximize' (or a list of them); got {direction!r}."
            )
    out: dict[str, Any] = {"directions": directions}
    n_trials = o["n_trials"]
    out["n_trials"] = None if n_trials is None else check_int("hydra.sweeper.n_trials", n_trials, low=1)
    out["n_jobs"] = check_int("hydra.sweeper.n_jobs", o["n_jobs"], low=1)
    out["max_failure_rate"] = check_range("hydra.sweeper.max_failure_rate", o["max_failure_rate"], 0.0, 1.0)
    folds = o["folds"]
    out["folds"] = None if folds is None else check_int("hydra.sweeper.folds", folds, low=2)
    hb = o["heartbeat_interval"]
    out["heartbeat_interval"] = None if hb is None else check_int("hydra.sweeper.heartbeat_interval", hb, low=1)
    grace = o["grace_period"]
    out["grace_period"] = None if grace is None else check_int("hydra.sweeper.grace_period", grace, low=1)
    retry = o["max_retry"]
    out["max_retry"] = None if retry is None else check_int("hydra.sweeper.max_retry", retry, low=0)
    out["poll_interval"] = check_range(
        "hydra.sweeper.poll_interval", o["poll_interval"], 0.0, None, low_inclusive=False
    )
    out["storage_retry"] = check_range("hydra.sweeper.storage_retry", o["storage_retry"], 0.0)
    confirm = o["confirm"] or {}
    if not isinstance(confirm, Mapping):
        raise ConfigError(f"`hydra.sweeper.confirm` must be a mapping with top_k and seeds; got {confirm!r}.")
    top_k = check_int("hydra.sweeper.confirm.top_k", confirm.get("top_k", default("top_k", ConfirmConf)), low=0)
    seeds = confirm.get("seeds") or []
    if not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"`hydra.sweeper.confirm.seeds` must be a list of integer seeds; got {seeds!r}.")
    seeds = [check_int("hydra.sweeper.confirm.seeds[]", s) for s in seeds]
    if top_k and not seeds:
        raise ConfigError(
            f"`hydra.sweeper.confirm.top_k` is {top_k} but `hydra.sweeper.confirm.seeds` is empty; "
            "give the fresh seeds, e.g. hydra.sweeper.confirm.seeds=[1,2,3]."
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"`hydra.sweeper.confirm.seeds` must not repeat a seed; got {seeds!r}.")
    overrides = confirm.get("overrides") or []
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(x, str) and "=" in x for x in overrides):
        raise ConfigError(
            f"`hydra.sweeper.confirm.overrides` must be a list of key=value overrides for the confirmation jobs, "
            f"e.g. [test=true]; got {overrides!r}."
        )
    out["confirm"] = {"top_k": top_k, "seeds": seeds, "overrides": list(overrides)}
    keys = o["keys"] or {}
    if not isinstance(keys, Mapping):
        raise ConfigError(f"`hydra.sweeper.keys` must be a mapping of fold, num_folds and seed; got {keys!r}.")
    out["keys"] = {}
    for role in ("fold", "num_folds", "seed"):
        key = keys.get(role, default(role, KeysConf))
        if not isinstance(key, str) or not key or "=" in key:
            raise ConfigError(
                f"`hydra.sweeper.keys.{role}` must be the task-config key a job sets (default {default(role, KeysConf)!r}); got {key!r}."
            )
        out["keys"][role] = key
    storage = o["storage"]
    if storage is not None and not isinstance(storage, str):
        raise ConfigError(f"`hydra.sweeper.storage` must be null or a database URL string; got {storage!r}.")
    out["storage"] = storage or None
    name = o["study_name"]
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"`hydra.sweeper.study_name` must be a non-empty string or null; got {name!r}.")
    if out["storage"] and not name:
        raise ConfigError(
            "`hydra.sweeper.study_name` must be set when `hydra.sweeper.storage` is a shared database: every "
            f"worker joins the study by that name. Storage: {mask_url(out['storage'])!r}."
        )
    out["study_name"] = name or "study"
    out["params"] = o["params"] or {}
    if not isinstance(out["params"], Mapping):
        raise ConfigError(f"`hydra.sweeper.params` must map config keys to search spaces; got {out['params']!r}.")
    out["sampler"] = o["sampler"]
    out["pruner"] = o["pruner"]
    custom = o["custom_search_space"]
    if custom is not None and (not isinstance(custom, str) or "." not in custom):
        raise ConfigError(
            "`hydra.sweeper.custom_search_space` must be null or the dotted path of a function (cfg, trial) -> None, "
            f"e.g. my_app.search.extend; got {custom!r}."
        )
    out["custom_search_space"] = custom
    return out


def _extender(path: str | None, config: DictConfig) -> Callable[[optuna.trial.Trial], None] | None:
    """``custom_search_space``'s function, bound to the sweep's config (as Hydra's sweeper calls it)."""
    if path is None:
        return None
    from hydra.utils import get_method

    try:
        fn = get_method(path)
    except Exception as err:  # noqa: BLE001 - hydra's import error text
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"`hydra.sweeper.custom_search_space` must name a function (cfg, trial) -> None; got {path!r} ({reason})."
        ) from None

    def extend(trial: optuna.trial.Trial) -> None:
        fn(config, trial)

    return extend


@dataclass
class StudyPlan:
    """The opened study and what the worker needs; built by :func:`open_study`.

    Example:
        >>> import tempfile
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> cfg = OmegaConf.create({"optimized_metric": "val/acc", "hydra": {"sweep": {"dir": tempfile.mkdtemp()}}})
        >>> plan = open_study({"direction": "maximize", "n_trials": 3}, ["model.dropout=interval(0,0.5)"], cfg)
        >>> plan.study_name, plan.monitor, plan.prune, list(plan.space.distributions)
        ('study', 'val/acc', False, ['model.dropout'])
        >>> sorted(p.name for p in plan.sweep_dir.iterdir())
        ['multirun.yaml', 'optuna.db']
    """

    study: optuna.Study
    space: SearchSpace
    options: dict[str, Any]
    study_name: str
    storage_url: str
    sweep_dir: Path
    monitor: Any
    prune: bool
    node: int
    extend: Callable[[optuna.trial.Trial], None] | None = None

    def worker(self, launch: Callable[[Sequence[Any]], Sequence[Any]]) -> StudyWorker:
        o = self.options
        return StudyWorker(
            self.study,
            self.space,
            launch,
            n_trials=o["n_trials"],
            n_jobs=o["n_jobs"],
            monitor=self.monitor,
            prune=self.prune,
            num_folds=o["folds"],
            poll_interval=o["poll_interval"],
            study_name=self.study_name,
            max_failure_rate=o["max_failure_rate"],
            extend=self.extend,
            keys=o["keys"],
        )

    def after_run(self, worker: StudyWorker, told: Sequence[optuna.trial.FrozenTrial]) -> None:
        """Confirm the winners (one worker does it) and write ``study.json`` into the sweep directory."""
        trials = self.study.get_trials(deepcopy=False)
        done = finished_trials(trials)
        confirm = self.options["confirm"]
        failure: SweepFailed | None = None
        if confirm["top_k"] and ATTR["confirm"] not in self.study.user_attrs:
            last = max(done, key=lambda t: (t.datetime_complete or t.datetime_start, t.number), default=None)
            owner = not told or (last is not None and any(t.number == last.number for t in told))
            if owner:
                log.info("confirming the top %d trial(s) with seeds %s", confirm["top_k"], confirm["seeds"])
                try:
                    worker.confirm(confirm["top_k"], confirm["seeds"], confirm["overrides"])
                except SweepFailed as err:
                    failure = err
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        summary = {
            "study_name": self.study_name,
            "storage": mask_url(self.storage_url),
            "directions": self.options["directions"],
            "n_trials": self.options["n_trials"],
            "finished": len(done),
            "states": states,
            "told_by_this_worker": [t.number for t in told],
        }
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.sweep_dir / "study.json", json.dumps(summary, indent=2, default=str))
        # What Hydra's Optuna sweeper wrote, for the tools that read it.
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            results: dict[str, Any] = {"name": "optuna"}
            if len(self.options["directions"]) == 1:
                best = self.study.best_trial
                results.update(best_params=dict(best.params), best_value=best.value)
            else:
                results["solutions"] = [
                    {"params": dict(t.params), "values": list(t.values)} for t in self.study.best_trials
                ]
            with atomic_write(self.sweep_dir / "optimization_results.yaml") as fh:
                OmegaConf.save(OmegaConf.create(results), fh)
        log.info(
            "study %r: %d finished trial(s) (%s); this worker ran %d",
            self.study_name,
            len(done),
            ", ".join(f"{v} {k}" for k, v in sorted(states.items())),
            len(told),
        )
        if failure is not None:  # after study.json and the results are written: the study itself is fine
            raise failure


def _warn_if_alone(config: DictConfig, sweep_dir: Path) -> None:
    """Say so when this worker's study is the default file in a sweep dir named by the time it started.

    Hydra's default ``hydra.sweep.dir`` (``multirun/${now:...}``) and most templates' put the start time in the
    path, so a second worker started with the same command opens a study of its own: the promise is that workers
    meant to share a study do, or are told that they don't.

    Example:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.create({"hydra": {"sweep": {"dir": "multirun/${now:%H-%M-%S}"}}})
        >>> _timestamped(cfg), _timestamped(OmegaConf.create({"hydra": {"sweep": {"dir": "sweeps/s"}}}))
        (True, False)
    """
    if _timestamped(config):
        log.warning(
            "this worker has a study of its own: its storage is the default file %s in a sweep dir named by the time "
            "it started, so a worker started later gets another one. To share one study, give every worker the same "
            "hydra.sweep.dir=<a fixed path>, or hydra.sweeper.storage=<a database URL> with hydra.sweeper.study_name.",
            sweep_dir / "optuna.db",
        )


def _timestamped(config: DictConfig) -> bool:
    sweep = OmegaConf.select(config, "hydra.sweep")
    if sweep is None:
        return False
    raw = OmegaConf.to_container(sweep, resolve=False)  # the text as written, before ${now:...} is filled in
    return isinstance(raw, dict) and "${now:" in str(raw.get("dir", ""))


def job_probes(space: SearchSpace, o: Mapping[str, Any]) -> list[list[str]]:
    """The overrides of one job of each kind this sweep will launch (a trial's, a fold's, a confirmation's), with
    every swept key at a first value: composing them checks each key the jobs set before any trial is drawn.

    Example:
        >>> from lightning_reg.study.search_space import parse_search_space
        >>> space = parse_search_space({"x": "choice(1, 2)"}, [])
        >>> o = {"folds": 2, "confirm": {"top_k": 1, "seeds": [7], "overrides": ["test=true"]},
        ...      "keys": {"fold": "data.fold", "num_folds": "data.num_folds", "seed": "seed"}}
        >>> job_probes(space, o)
        [['x=1'], ['x=1', 'data.fold=0', 'data.num_folds=2'], ['x=1', 'seed=7', 'test=true']]
    """
    from lightning_reg.study.jobs import fold_variants, seed_variants

    def first(dist: Any) -> Any:
        return dist.choices[0] if hasattr(dist, "choices") else dist.low

    base = [*space.fixed, *space.overrides({k: first(d) for k, d in space.distributions.items()})]
    probes = [base]
    if o["folds"]:
        probes.append([*base, *fold_variants(o["folds"], o["keys"])[0].overrides])
    confirm = o["confirm"] or {}
    if confirm.get("top_k"):
        probes.append(
            [*base, *seed_variants(confirm["seeds"][:1], o["keys"]["seed"])[0].overrides, *confirm["overrides"]]
        )
    return probes


def open_study(
    options: Mapping[str, Any],
    arguments: Sequence[str],
    config: DictConfig,
    check_jobs: Callable[[SearchSpace, list[list[str]]], None] | None = None,
) -> StudyPlan:
    """Check everything, open (or create, or resume) the study; no job runs here.

    ``check_jobs(space, probes)`` composes the jobs' configs (the sweeper passes Hydra's composition): it runs after
    every option is checked and before the storage is opened, so a key the task lacks leaves nothing behind.
    """

    o = check_options(options)
    o["sampler"] = resolve_sampler_node(o["sampler"], config)
    o["pruner"] = _check_node("pruner", o["pruner"], PRUNER_GROUP, PRUNER_NAMES)
    space = parse_search_space(o["params"], arguments)
    extend = _extender(o["custom_search_space"], config)
    if not space.distributions:
        raise ConfigError(
            "the sweep has nothing to search: give `hydra.sweeper.params` or a sweep override "
            "such as model.dropout=interval(0,0.5)."
        )
    monitor = _plain(config.get("optimized_metric"))
    n_obj = len(o["directions"])
    monitors = monitor if isinstance(monitor, list) else [monitor]
    # No optimized_metric: the task function's return value is the objective (as in Hydra's Optuna sweeper).
    if monitor is not None and (len(monitors) != n_obj or any(not isinstance(m, str) or not m for m in monitors)):
        raise ConfigError(
            f"`optimized_metric` must name {n_obj} metric(s), one per `hydra.sweeper.direction` "
            f"{o['directions']!r}; got {monitor!r}."
        )
    pruner = build_pruner(o["pruner"])
    prune = not isinstance(pruner, optuna.pruners.NopPruner)
    if prune and n_obj > 1:
        raise ConfigError(
            "`hydra.sweeper.pruner` cannot prune a multi-objective study (Optuna reports one "
            f"value per step); use hydra/sweeper/lightning_reg_pruner=none with direction {o['directions']!r}."
        )
    if prune and (monitor is None or not str(monitors[0]).startswith("val/")):
        raise ConfigError(
            f"`hydra.sweeper.pruner` needs a validation metric to judge after each epoch, but `optimized_metric` "
            f"is {monitors[0]!r}. Set optimized_metric=val/<name> (e.g. val/acc) or hydra/sweeper/lightning_reg_pruner=none."
        )
    sweep_dir = Path(str(config.hydra.sweep.dir))
    grid_sampler = _is_grid(o["sampler"])
    if grid_sampler:
        size = space.grid_size()
        if o["n_trials"] is None:
            o["n_trials"] = size
        elif o["n_trials"] > size:
            # As Hydra's Optuna sweeper: a grid trial is never repeated, so the grid's size caps n_trials.
            log.info("n_trials %d capped at %d, the grid's size", o["n_trials"], size)
            o["n_trials"] = size
    elif o["n_trials"] is None:
        raise ConfigError("`hydra.sweeper.n_trials` may be null only with the grid sampler; give a number of trials.")
    if check_jobs is not None:
        check_jobs(space, job_probes(space, o))
    url = o["storage"] or default_storage_url(sweep_dir)
    if not o["storage"]:
        _warn_if_alone(config, sweep_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(
            url,
            heartbeat_interval=o["heartbeat_interval"],
            grace_period=o["grace_period"],
            max_retry=o["max_retry"],
            retry=o["storage_retry"],
        )
    directions = o["directions"]
    try:
        existing = optuna.load_study(study_name=o["study_name"], storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        _check_same_study(existing, o["study_name"], url, directions, monitor, space)
    sampler_conf = dict(o["sampler"] or {})
    n_existing = len(existing.get_trials(deepcopy=False)) if existing is not None else 0
    if n_existing and isinstance(sampler_conf.get("seed"), int) and not grid_sampler:
        # A resumed (or second) worker: the seed as given would replay the draws of the first one. Not for
        # the grid: its seed orders the grid, and every worker must number the points alike.
        sampler_conf["seed"] = sampler_conf["seed"] + n_existing
    sampler = _build_sampler(sampler_conf, space)
    study = optuna.create_study(
        study_name=o["study_name"],
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        directions=directions,
        load_if_exists=True,
    )
    if existing is None:
        study.set_user_attr(METRIC_ATTR, monitor)
        study.set_user_attr(ATTR["params"], {k: str(v) for k, v in o["params"].items()})
        study.set_user_attr(SPACE_ATTR, _space_record(space))
    else:
        done = len(finished_trials(study.get_trials(deepcopy=False)))
        log.info(
            "resuming study %r in %s: %d of %d trial(s) finished", o["study_name"], mask_url(url), done, o["n_trials"]
        )
    log.info("study %r: sampler %s, pruner %s", o["study_name"], type(sampler).__name__, type(pruner).__name__)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    multirun = sweep_dir / "multirun.yaml"
    if not multirun.exists():
        with atomic_write(multirun) as fh:
            OmegaConf.save(config, fh)
    return StudyPlan(study, space, o, o["study_name"], url, sweep_dir, monitor, prune, node_rank(), extend)
