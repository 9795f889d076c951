"""The Hydra side of lightning_reg's Optuna sweeper: config checks, the study, and the launcher as job runner.

The loop itself (ask, run, tell; surplus trials; heartbeats; confirmation) lives in
:mod:`lightning_reg.study.worker`, which knows nothing of Hydra. This class turns the worker's job specs into
Hydra job overrides and hands them to whatever launcher is configured (basic, joblib, submitit), so a job
may run in this process, in a pool or on a SLURM node.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lightning_reg.study")

#: How long a SIGTERM'd worker waits for its jobs in other processes to record their end.
SETTLE_SECONDS = 60.0


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a nested mapping, dotted (``data.fold``)."""
    if not isinstance(node, dict):
        return []
    out: list[str] = []
    for k, v in node.items():
        out += [f"{prefix}{k}", *_dotted_keys(v, f"{prefix}{k}.")]
    return out


def _option_setting(key: str, space: Any, options: Any) -> str:
    """The sweeper option through which a job gets ``key``: a swept parameter, a fold or seed key, or a confirm override."""
    if key in space.distributions:
        return f"hydra.sweeper.params.{key}"
    from lightning_reg.study.jobs import DEFAULT_KEYS

    keys = {**DEFAULT_KEYS, **dict(options.get("keys") or {})}
    for role, name in keys.items():
        if name == key:
            return f"hydra.sweeper.keys.{role}"
    confirm = options.get("confirm") or {}
    if any(str(o).split("=", 1)[0].lstrip("+~") == key for o in (confirm.get("overrides") or [])):
        return "hydra.sweeper.confirm.overrides"
    return key


class LightningRegOptunaSweeper(Sweeper):
    """``hydra/sweeper=lightning_reg_optuna``: a study on current Optuna, shared by any number of workers.

    See :class:`hydra_plugins.lightning_reg_optuna.config.LightningRegOptunaSweeperConf` for the keys, and
    ``docs/sweeps.md`` for pruning, workers on several machines, resume, folds and confirmed winners.

    Example:
        .. code-block:: bash

            python -m lightning_reg.train -m hparams_search=digits_optuna hydra/sweeper/lightning_reg_pruner=median
    """

    def __init__(self, **kwargs: Any) -> None:
        self.options = kwargs
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.hydra_context: HydraContext | None = None
        self._job_idx = 0
        self._validated = False
        self._running: list[Path] = []  # the job directories of the batch the launcher runs now

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from lightning_reg._hydra_internals import compose_once

        self.config = config
        # The jobs of a sweep differ in values only: each choice of config groups is composed once (about 150 ms a
        # job otherwise), and every job's config is what Hydra's own loader gives (lightning_reg/_hydra_internals.py).
        self.hydra_context = HydraContext(
            config_loader=compose_once(hydra_context.config_loader), callbacks=hydra_context.callbacks
        )
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=self.hydra_context, task_function=task_function
        )

    # -- jobs --------------------------------------------------------------------------------------
    def _launch(self, specs: Sequence[Any]) -> list[Any]:
        import optuna
        from hydra.core.utils import JobStatus

        from lightning_reg.study.jobs import JobOutcome
        from lightning_reg.study.link import ENV
        from lightning_reg.study.search_space import format_value

        batch = []
        for spec in specs:
            overrides = [*spec.overrides, f"hydra.sweep.subdir={spec.subdir}"]
            if spec.link is not None:
                overrides.append(f"++hydra.job.env_set.{ENV}={format_value(spec.link.to_json())}")
            batch.append(overrides)
        if not self._validated:
            # Every batch has the same keys (the search space and the fixed overrides): composing one batch up
            # front catches a bad override before the first job; doing it for every batch cost ~0.2 s a trial.
            self.validate_batch_is_legal(batch[:1])
            self._validated = True
        assert self.config is not None
        self._running = [Path(str(self.config.hydra.sweep.dir)) / spec.subdir for spec in specs]
        try:
            returns = self.launcher.launch(batch, initial_job_idx=self._job_idx)
        finally:
            self._running = []
        self._job_idx += len(batch)
        outcomes = []
        for spec, ret in zip(specs, returns):
            job_dir = str(Path(str(self.config.hydra.sweep.dir)) / spec.subdir)
            try:
                value = ret.return_value  # re-raises the job's exception when the job failed
            except optuna.TrialPruned:  # the job's return says "pruned", as an Optuna objective's does
                outcomes.append(JobOutcome(None, pruned=True, job_dir=job_dir))
                continue
            except Exception as err:  # noqa: BLE001 - a failed job is a failed trial, not a failed sweep
                outcomes.append(JobOutcome(None, failed=True, error=f"{type(err).__name__}: {err}", job_dir=job_dir))
                continue
            outcomes.append(JobOutcome(value, failed=ret.status != JobStatus.COMPLETED, job_dir=job_dir))
        return outcomes

    def _settle_jobs(self, timeout: float = SETTLE_SECONDS) -> None:
        """On SIGTERM, after the worker passed the signal on: wait until each job running in another process (a joblib
        worker) has written its ``metrics.json``, for up to ``timeout`` seconds. joblib stops every job still running
        as soon as one ends in an exception (the interrupted job's exit), so a slower job would lose its record."""
        import time

        from lightning_reg.study.nodes import descendants

        assert self.config is not None
        target = str(OmegaConf.select(self.config, "hydra.launcher._target_", default="") or "")
        if target.endswith("BasicLauncher") or not descendants(os.getpid()):
            return  # the jobs run in this process: they end after this handler returns
        deadline = time.monotonic() + timeout
        waiting = [d for d in self._running if not (d / "metrics.json").exists()]
        while waiting and time.monotonic() < deadline:
            time.sleep(0.1)
            waiting = [d for d in waiting if not (d / "metrics.json").exists()]
        if waiting:
            log.warning("SIGTERM: %d job(s) recorded no end within %.0f s: %s", len(waiting), timeout, waiting)

    def _check_jobs(self, space: Any, probes: list[list[str]]) -> None:
        """Compose one job of each kind (a trial's, a fold's, a confirmation's) before the study opens; a key the
        task's config lacks is one ConfigError naming the option that sets it and the closest keys there are."""
        import difflib
        import re

        from lightning_reg.errors import ConfigError

        for probe in probes:
            try:
                self.validate_batch_is_legal([probe])
            except Exception as err:  # noqa: BLE001 - Hydra's composition errors, re-worded below
                text = str(err).strip()
                match = re.search(r"override '([^']+)'", text)
                if match is None:
                    raise ConfigError(f"a job of this sweep cannot be composed: {text.splitlines()[0]}") from None
                key = match.group(1)
                assert self.config is not None
                container = OmegaConf.to_container(self.config, resolve=False)
                assert isinstance(container, dict)
                task = {k: v for k, v in container.items() if k != "hydra"}
                close = difflib.get_close_matches(key, _dotted_keys(task), n=3)
                given = next((o for o in probe if o.split("=", 1)[0].lstrip("+~") == key), key)
                where = _option_setting(key, space, self.options)
                hint = f"did you mean {', '.join(map(repr, close))}?" if close else "a new key needs a leading +"
                raise ConfigError(f"`{where}`: the task's config has no key {key!r} ({hint}); got {given!r}.") from None

    # -- the sweep ---------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> Any:
        from lightning_reg.errors import ConfigError
        from lightning_reg.study.confirm import SweepFailed
        from lightning_reg.study.link import shared_storages

        try:
            with shared_storages():  # the jobs this process runs share one connection to the study
                return self._sweep(arguments)
        except ConfigError as err:
            # Bad input, found before any trial: one line and exit status 2, no traceback.
            print(f"lightning_reg: error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        except SweepFailed as err:
            # Too many failed trials, or none completed: exit status 1, as Hydra's Optuna sweeper.
            print(f"lightning_reg: sweep failed: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    def _sweep(self, arguments: list[str]) -> Any:
        from lightning_reg.study.setup import open_study

        assert self.config is not None
        plan = open_study(self.options, arguments, self.config, check_jobs=self._check_jobs)
        worker = plan.worker(self._launch)
        worker.settle = self._settle_jobs
        if plan.node > 0:
            n = worker.follow(plan.node)
            log.info("node %d trained %d trial(s) of study %r with node 0", plan.node, n, plan.study_name)
            return []
        from optuna.trial import TrialState

        from lightning_reg.study.confirm import SweepFailed

        told = worker.run()
        plan.after_run(worker, told)
        # Every trial failed (none complete, none pruned): the sweep failed, as Hydra's exits 1.
        if not plan.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            first = f"; first error: {worker.errors[0]}" if worker.errors else ""
            raise SweepFailed(f"no trial of study {plan.study_name!r} completed ({len(told)} run here){first}")
        return told
