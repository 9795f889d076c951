"""One sweep worker: ask the shared study for a trial, run its job(s), tell the result, until the study is done.

Run the same command on one machine or many, with the same ``storage`` and ``study_name``: each process is a
worker, with no batch barrier across workers. The study is the only coordination point: finished, running and
waiting trials hold the ``n_trials`` slots (a race for the last one is settled in :meth:`StudyWorker._ask`), and
a dead worker's trial is failed by any live worker once its heartbeat stops, then queued again by Optuna.

What a worker launches is in :mod:`~lightning_reg.study.jobs`; multi-node following in
:mod:`~lightning_reg.study.nodes`; confirmed winners in :mod:`~lightning_reg.study.confirm`.
"""

from __future__ import annotations

import logging
import os
import socket
import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lightning_reg.study.confirm import ConfirmMixin, SweepFailed
from lightning_reg.study.engine import (
    ATTR,
    HeartbeatThread,
    finished_trials,
    is_finished,
    is_live,
    storage_of,
    trial_id_of,
)
from lightning_reg.study.jobs import (
    DEFAULT_KEYS,
    JobOutcome,
    JobSpec,
    Launch,
    Variant,
    _as_values,
    fold_variants,
)
from lightning_reg.study.link import TrialLink, fold_means
from lightning_reg.study.nodes import FollowerMixin, group_key, signal_descendants
from lightning_reg.study.options import default
from lightning_reg.study.retry import StorageOutage
from lightning_reg.study.search_space import SearchSpace

__all__ = ["StudyWorker"]

log = logging.getLogger("lightning_reg.study")


class StudyWorker(FollowerMixin, ConfirmMixin):
    """The ask-run-tell loop of one worker process on a shared study (see the module docstring).

    Args:
        study: the Optuna study (its storage shared by every worker).
        space: the search space and the fixed overrides.
        launch: runs a batch of jobs and returns their outcomes (the Hydra launcher, in the sweeper).
        n_trials: finished trials the whole study should hold.
        n_jobs: jobs this worker launches at once (its launcher runs them in parallel if it can).
        monitor: the metric the jobs optimize and report (``optimized_metric``).
        prune: whether the jobs report to the pruner.
        num_folds: evaluate every trial over this many folds (each fold its own job); ``None`` for one job.
        poll_interval: seconds between looks at the study while other workers hold the last slots.
        study_name: the study's name (for the jobs' links).

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> from lightning_reg.study.search_space import parse_search_space
        >>> study = optuna.create_study(study_name="doc", direction="maximize")
        >>> space = parse_search_space({"x": "interval(0.0, 1.0)"}, [])
        >>> def launch(specs):  # a stand-in for the Hydra launcher: the job's value is its x
        ...     return [JobOutcome(float(s.overrides[0].split("=")[1])) for s in specs]
        >>> worker = StudyWorker(study, space, launch, n_trials=4, monitor="x", study_name="doc")
        >>> len(worker.run()), len(study.trials)
        (4, 4)
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        launch: Launch,
        *,
        n_trials: int,
        n_jobs: int = 1,
        monitor: str | Sequence[str] | None = None,
        prune: bool = False,
        num_folds: int | None = None,
        poll_interval: float = default("poll_interval"),
        study_name: str | None = None,
        storage_in_link: str | None = None,
        max_failure_rate: float = default("max_failure_rate"),
        extend: Callable[[optuna.trial.Trial], None] | None = None,
        keys: Mapping[str, str] = DEFAULT_KEYS,
    ) -> None:
        self.keys = dict(keys)
        self.study = study
        self.storage = storage_of(study)
        self.space = space
        self.launch = launch
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.monitor = monitor
        self.prune = prune
        self.num_folds = num_folds
        self.poll_interval = poll_interval
        self.study_name = study_name or study.study_name
        self.storage_in_link = storage_in_link
        self.max_failure_rate = max_failure_rate
        self.extend = extend
        self.errors: list[str] = []
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.n_objectives = len(study.directions)
        self.told: list[FrozenTrial] = []
        self.group = group_key()
        self._group_seq = 0
        self._interrupted = False
        self._terminated = False  # SIGTERM seen
        self._in_job = False
        #: On SIGTERM, once the jobs have the signal: waits for jobs in other processes to record their end.
        self.settle: Callable[[], None] | None = None

    def _trials(self, fail_stale: bool = True) -> list[FrozenTrial]:
        if fail_stale:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        return self.study.get_trials(deepcopy=False)

    def _slot(self, trial: FrozenTrial, trials: Sequence[FrozenTrial]) -> str | None:
        """Why ``trial`` (just asked) must not run, or ``None`` when it holds one of the ``n_trials`` slots.

        ``"full"``: other workers took the last slots first. ``"duplicate"``: another live or finished trial
        has the same grid point, or (with a continuous parameter) exactly the same values, which only happens
        when two workers' seeded samplers drew the same stream.
        """
        counted = sorted((t for t in trials if is_finished(t) or is_live(t)), key=lambda t: t.number)
        numbers = [t.number for t in counted]
        if trial.number not in numbers or numbers.index(trial.number) >= self.n_trials:
            return "full"
        # Compared with every other trial, earlier or later: a worker writes a trial's values just after
        # creating it, so of two workers that drew the same values at once, at least one sees the other's
        # (both may, and then both draw again).
        others = [t for t in counted if t.number != trial.number]
        if trial.system_attrs.get("grid_id") is not None:
            return "duplicate" if any(t.params == trial.params for t in others) else None
        continuous = any(
            isinstance(d, optuna.distributions.FloatDistribution) for d in self.space.distributions.values()
        )
        # Only the trials of other workers: this worker's own sampler may well draw a point again (a TPE or a
        # random sampler on discrete values does), and reseeding it then would make a seeded sweep irreproducible.
        theirs = [t for t in others if t.user_attrs.get(ATTR["worker"]) != self.worker_id]
        if continuous and trial.params and any(t.params == trial.params for t in theirs):
            return "duplicate"
        return None

    def _ask(self) -> optuna.trial.Trial | None:
        """This worker's next trial, or ``None`` when other workers took the last slots.

        Two promises are kept here that Optuna's ask-and-tell does not make across processes:

        - ``n_trials`` counts the study's finished trials over all workers (Hydra's meaning) and is never
          exceeded: a trial asked in a race for the last slot is failed as ``surplus`` before it runs;
        - workers started from one seeded config do not all run the same points: a trial whose values another
          worker already drew is failed as ``surplus`` and this worker's sampler leaves that stream. A worker's
          own repeats are left alone, so one seeded worker is reproducible.
        """
        for _attempt in range(5):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                trial = self.study.ask(fixed_distributions=self.space.distributions)
            # Marked as this worker's before the duplicate check, so that the check can tell its own trials.
            trial.set_user_attr(ATTR["worker"], self.worker_id)
            # The loop's look just failed the stale trials; this one only needs the trial just created.
            trials = self._trials(fail_stale=False)
            frozen = next(t for t in trials if t.number == trial.number)
            why = self._slot(frozen, trials)
            if why is None:
                break
            trial.set_user_attr(ATTR["status"], "surplus")
            self.study.tell(trial, state=TrialState.FAIL)
            if why == "full":
                if "grid_id" in frozen.system_attrs:
                    # Promise: a grid sweep runs each point once, also when it is resumed with a larger n_trials.
                    # Optuna's grid sampler counts this failed trial's point as visited, so the point is queued
                    # again (a duplicate's point is held by the trial it duplicates, so only "full" needs this).
                    self.study.enqueue_trial(frozen.params)
                log.info("trial %d not run: other workers took the last slots", trial.number)
                return None
            # Another worker's sampler drew the same values (same seed): leave that stream and draw again.
            log.info("trial %d not run: another worker drew the same parameters %s", trial.number, frozen.params)
            self.study.sampler.reseed_rng()
        else:
            return None
        if self.extend is not None:
            self.extend(trial)  # custom_search_space: more params, drawn with the trial API
        if self.group is not None:
            trial.set_user_attr(ATTR["group"], self.group)
            trial.set_user_attr(ATTR["group_seq"], self._group_seq)
            self._group_seq += 1
        return trial

    def specs_for(
        self,
        trial: optuna.trial.Trial | None,
        params: dict[str, Any],
        variants: Sequence[Variant],
        subdir: str,
        extra: Sequence[str] = (),
        role: str = "leader",
    ) -> list[JobSpec]:
        base = [*self.space.fixed, *self.space.overrides(params), *extra]
        specs = []
        for v in variants:
            link = None
            if trial is not None:
                link = TrialLink(
                    study=self.study_name,
                    trial_id=trial_id_of(trial),
                    number=trial.number,
                    monitor=self.monitor if isinstance(self.monitor, str) or self.monitor is None else self.monitor[0],
                    direction=self.study.directions[0].name.lower(),
                    prune=self.prune,
                    storage=self.storage_in_link,
                    role=role,
                    fold=v.fold,
                    num_folds=v.num_folds,
                )
            specs.append(JobSpec([*base, *v.overrides], f"{subdir}/{v.name}" if v.name else subdir, link))
        return specs

    def _tell(self, trial: optuna.trial.Trial, outcomes: Sequence[JobOutcome]) -> FrozenTrial:
        """Tell the trial from its jobs' returns (the one channel of a job's outcome): a failure fails it, a job that
        raised ``optuna.TrialPruned`` prunes it, else it completes with the (fold-mean) returned values. The epochs
        and the pruned epoch are read from the pruner's data (the reports, or the folds' curves). This worker is the
        one writer of the trial's status."""
        values = [_as_values(o.value, self.n_objectives) for o in outcomes]
        if any(o.failed and not o.pruned for o in outcomes):
            why = next((o.error for o in outcomes if o.error), None) or "a job failed"
            return self._tell_failed(trial, why)
        pruned = any(o.pruned for o in outcomes)
        if not pruned and any(v is None for v in values):
            why = f"a job returned no finite value for {self.monitor} ({[o.value for o in outcomes]!r})"
            return self._tell_failed(trial, why)
        # A running trial is read from the database, not Optuna's cache: the jobs' reports are in.
        frozen = self.storage.get_trial(trial_id_of(trial))
        if self.num_folds:
            curves = {i: frozen.user_attrs.get(f"{ATTR['fold_values']}{i}") or [] for i in range(self.num_folds)}
            means = fold_means(curves)
            for epoch, mean in means.items():
                trial.report(mean, epoch)
            epochs = max((len(c) for c in curves.values()), default=0) or None
            # The fold whose pruner fired stopped first: the trial was pruned after its last epoch.
            last = [len(curves[i]) - 1 for i, o in enumerate(outcomes) if o.pruned and curves.get(i)]
            pruned_epoch = min(last) if last else None
        else:
            steps = list(frozen.intermediate_values)
            epochs = max(steps) + 1 if steps else None
            pruned_epoch = max(steps) if steps else None
        attrs: dict[str, Any] = {ATTR["epochs"]: epochs, ATTR["status"]: "pruned" if pruned else "completed"}
        attrs[ATTR["job_dir"]] = outcomes[0].job_dir if len(outcomes) == 1 else None
        attrs[ATTR["pruned_epoch"]] = pruned_epoch if pruned else None
        if self.num_folds and not pruned:
            attrs[ATTR["fold_results"]] = [v[0] if len(v) == 1 else v for v in values if v]
        for key, value in attrs.items():
            if value is not None:
                trial.set_user_attr(key, value)
        if pruned:
            return self.study.tell(trial, state=TrialState.PRUNED)
        told = [statistics.fmean(v[k] for v in values if v) for k in range(self.n_objectives)]
        return self.study.tell(trial, told if self.n_objectives > 1 else told[0])

    def _tell_failed(self, trial: optuna.trial.Trial, why: str) -> FrozenTrial:
        self.errors.append(f"trial {trial.number}: {why}")
        trial.set_user_attr(ATTR["status"], "failed")
        log.warning("trial %d failed (%s)", trial.number, why)
        return self.study.tell(trial, state=TrialState.FAIL)

    def run(self) -> list[FrozenTrial]:
        """Work on the study until it holds ``n_trials`` finished trials; return the trials this worker told.

        Ctrl-C stops the worker: a trial interrupted mid-job is failed and queued again. A Ctrl-C that Python swallows
        (in a finalizer) is still seen through a flag, and the worker stops after telling the trial that was running.

        SIGTERM (a SLURM preemption) stops the worker with exit status 143: a job that is training writes its
        ``last.ckpt`` and ``metrics.json`` (``status: interrupted``) and ends (Lightning's SIGTERM handling, see
        :mod:`lightning_reg.app.train`); its trial is failed and queued once again, and the retry resumes the
        job's directory from that checkpoint (:meth:`subdir_of`). Outside a job the worker exits at once.
        """
        import signal
        import threading

        prev: Any = None
        prev_term: Any = None
        if threading.current_thread() is threading.main_thread():
            prev = signal.getsignal(signal.SIGINT)
            prev_term = signal.getsignal(signal.SIGTERM)

            def _flag(signum: int, frame: Any) -> None:
                self._interrupted = True
                if callable(prev):
                    prev(signum, frame)
                else:
                    raise KeyboardInterrupt

            def _term(signum: int, frame: Any) -> None:
                # Inside a job, Lightning's own handler (which calls this one too) ends the fit after the batch; jobs
                # in processes of their own (joblib's) get the signal from here, end the same way, and are waited for.
                self._terminated = True
                if not self._in_job:
                    log.warning("SIGTERM: the worker stops")
                    raise SystemExit(143)
                signal_descendants(signum)
                if self.settle is not None:
                    self.settle()

            signal.signal(signal.SIGINT, _flag)
            signal.signal(signal.SIGTERM, _term)
        try:
            return self._run()
        except StorageOutage as err:
            # Longer than hydra.sweeper.storage_retry: the running trial is left to the heartbeat (any worker
            # fails it once the database is back, and Optuna's retry callback queues it again).
            log.error("the worker stops: %s", err)
            raise SystemExit(f"lightning_reg: error: {err}; the worker stops, its running trial is retried") from None
        finally:
            if prev is not None:
                signal.signal(signal.SIGINT, prev)
            if prev_term is not None:
                signal.signal(signal.SIGTERM, prev_term)

    def _run(self) -> list[FrozenTrial]:
        variants = fold_variants(self.num_folds, self.keys)
        per_batch = max(1, self.n_jobs // len(variants))
        told_since_check = False
        while True:
            trials = self._trials()
            if told_since_check:  # the last batch's failures, judged on this look (no query of its own)
                self._check_failure_rate(trials)
                told_since_check = False
            done = len(finished_trials(trials))
            if done >= self.n_trials:
                break
            running = sum(t.state == TrialState.RUNNING for t in trials)
            free = min(per_batch, self.n_trials - done - running)
            if free <= 0:
                time.sleep(self.poll_interval)  # other workers hold the last slots; one of them may die
                continue
            batch: list[optuna.trial.Trial] = []
            try:
                # From the first ask on, a Ctrl-C or SIGTERM requeues what was asked: a trial left RUNNING before
                # its heartbeat started would never be failed, and every later worker would wait for it.
                for _ in range(free):
                    asked = self._ask()
                    if asked is not None:
                        batch.append(asked)
                if not batch:
                    continue
                specs: list[JobSpec] = []
                for trial in batch:
                    subdir, resume = self.subdir_of(trial)
                    specs += self.specs_for(
                        trial, trial.params, variants, subdir, extra=["ckpt_path=last"] if resume else ()
                    )
                log.info(
                    "worker %s: trial%s %s",
                    self.worker_id,
                    "s" if len(batch) > 1 else "",
                    ", ".join(f"{t.number} {t.params}" for t in batch),
                )
                self._in_job = True
                with HeartbeatThread(self.storage, [trial_id_of(t) for t in batch]):
                    outcomes = list(self.launch(specs))
            except StorageOutage:
                raise  # the database is gone: the heartbeat fails and retries the trial once it is back
            except BaseException:  # Ctrl-C (Lightning turns it into SystemExit), SIGTERM, or the launcher broke
                self._requeue(batch)
                raise
            finally:
                self._in_job = False
            for i, trial in enumerate(batch):
                try:
                    self.told.append(self._tell(trial, outcomes[i * len(variants) : (i + 1) * len(variants)]))
                except optuna.exceptions.UpdateFinishedTrialError:
                    # Its heartbeat was missed (a stalled machine) and another worker failed it; its retry runs
                    # the same parameters, so this result is dropped rather than counted twice.
                    log.warning(
                        "trial %d was failed by another worker (missed heartbeat) while it ran; its result "
                        "is dropped and its retry counts",
                        trial.number,
                    )
            told_since_check = True
            if self._interrupted:
                log.warning("interrupted: stopping after telling the trial(s) that were running")
                raise KeyboardInterrupt
            if self._terminated:
                log.warning("SIGTERM: stopping after telling the trial(s) that were running")
                raise SystemExit(143)
        if self.group is not None:
            self.study.set_user_attr(f"{ATTR['group']}:{self.group}:done", self._group_seq)
        return self.told

    def _check_failure_rate(self, trials: Sequence[FrozenTrial] | None = None) -> None:
        """Raise :class:`SweepFailed` once more than ``max_failure_rate`` of the study's ``n_trials`` failed.

        Checked after each batch, over the whole study (every worker's trials, ``trials`` when the caller has
        just read them): the sweep stops as soon as the fraction can no longer end up within the rate. With 0.0,
        the first failed trial ends the sweep.
        """
        if trials is None:
            trials = self.study.get_trials(deepcopy=False)
        failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(ATTR["status"]) == "failed"]
        if len(failed) > self.max_failure_rate * self.n_trials:
            first = self.errors[0] if self.errors else f"trial {failed[0].number}"
            raise SweepFailed(
                f"{len(failed)} trial(s) failed, more than `hydra.sweeper.max_failure_rate`={self.max_failure_rate:g} "
                f"of n_trials={self.n_trials}; first error: {first}"
            )

    def subdir_of(self, trial: optuna.trial.Trial) -> tuple[str, bool]:
        """The job directory (under the sweep directory) of ``trial`` and whether its job resumes there.

        A trial queued again after an interruption (SIGTERM, Ctrl-C: :meth:`_requeue`) carries the
        ``lightning_reg:subdir`` of the job it repeats and resumes that directory with ``ckpt_path=last`` (a
        fresh start where no checkpoint was written); any other trial, a retry after a lost heartbeat included
        (its first job may still be running on a stalled machine), gets a directory of its own, its number.
        """
        inherited = trial.user_attrs.get(ATTR["subdir"])
        return (str(inherited), True) if inherited else (str(trial.number), False)

    def _requeue(self, batch: Sequence[optuna.trial.Trial]) -> None:
        """Fail the interrupted trials and queue their parameters again, so a resumed sweep runs them."""
        for trial in batch:
            try:
                trial.set_user_attr(ATTR["status"], "interrupted")
                self.study.tell(trial, state=TrialState.FAIL)
                subdir = trial.user_attrs.get(ATTR["subdir"]) or str(trial.number)
                self.study.enqueue_trial(
                    trial.params, user_attrs={ATTR["retry_of"]: trial.number, ATTR["subdir"]: subdir}
                )
                log.warning("trial %d interrupted; queued again for the next worker", trial.number)
            except Exception:  # noqa: BLE001 - never mask the interrupt itself
                log.exception("could not requeue interrupted trial %d", trial.number)
