"""The worker's load on the study's database: what it reads per trial, and that what it reads is current.

benchmarks/sweep_scale.py measured the worker's SQL per trial (70 statements at 4 workers on PostgreSQL, 87
before): its ``tell`` re-read every running trial only to refresh Optuna's cache, the failure-rate check read
them all again after each batch, and the look inside ``ask`` failed stale trials just failed by the loop's own
look. These tests count the statements on a real SQLite storage and check that the reads that remain still see
what a job wrote through its own connection.
"""

from __future__ import annotations

import threading
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy import event

from lightning_reg.study.engine import ATTR, default_storage_url, open_storage
from lightning_reg.study.search_space import parse_search_space
from lightning_reg.study.worker import JobOutcome, StudyWorker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_worker_reads_each_running_trial_once_per_look_not_three_times(tmp_path: Path) -> None:
    counts = {"worker": 0}

    def count(*_args: object) -> None:
        if threading.current_thread().name != "lightning-reg-heartbeat":
            counts["worker"] += 1

    storage = open_storage(default_storage_url(tmp_path), retry=60)
    study = optuna.create_study(storage=storage, study_name="q", sampler=optuna.samplers.RandomSampler(seed=0))
    space = parse_search_space({"x": "interval(0.0, 1.0)", "y": "choice(1, 2, 3)"}, [])
    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    try:
        told = StudyWorker(study, space, lambda specs: [JobOutcome(0.5) for _ in specs], n_trials=12).run()
    finally:
        event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    assert [t.state for t in told] == [TrialState.COMPLETE] * 12
    # Optuna 5.1 with SQLAlchemy 2.1: 59 statements a trial (ask 25, tell 17, the loop's look 12, ...); 71 with
    # the cache refresh in tell and the failure-rate check's own read. Optuna's own calls are most of the rest.
    per_trial = counts["worker"] / 12
    assert 40 < per_trial < 66, per_trial


def test_tell_takes_the_outcome_from_the_jobs_return_and_the_reports_from_its_own_connection(
    tmp_path: Path,
) -> None:
    url = default_storage_url(tmp_path)
    study = optuna.create_study(storage=open_storage(url, retry=60), study_name="q")
    job_storage = open_storage(url, retry=60)  # the job's link opens the storage anew, as in another process

    def launch(specs: list) -> list[JobOutcome]:
        trial_id, number = specs[0].link.trial_id, specs[0].link.number
        for epoch in range(3 if number != 1 else 2):
            job_storage.set_trial_intermediate_value(trial_id, epoch, 0.1 * epoch)
        # A status a job writes on its trial is not a channel: the return alone says how the job ended.
        job_storage.set_trial_user_attr(trial_id, ATTR["status"], "failed")
        if number == 1:
            return [JobOutcome(None, pruned=True, job_dir=f"/runs/{number}")]
        return [JobOutcome(0.5, job_dir=f"/runs/{number}")]

    space = parse_search_space({"x": "interval(0.0, 1.0)"}, [])
    told = StudyWorker(study, space, launch, n_trials=3, max_failure_rate=1.0).run()
    assert [t.state for t in told] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    rows = [(t.user_attrs[ATTR["status"]], t.user_attrs[ATTR["epochs"]], t.user_attrs.get(ATTR["pruned_epoch"]),
             t.user_attrs[ATTR["job_dir"]]) for t in study.trials]  # fmt: skip
    assert rows == [("completed", 3, None, "/runs/0"), ("pruned", 2, 1, "/runs/1"), ("completed", 3, None, "/runs/2")]


def test_the_failure_rate_is_judged_on_the_next_look_and_stops_the_sweep(tmp_path: Path) -> None:
    from lightning_reg.study.worker import SweepFailed

    study = optuna.create_study(storage=open_storage(default_storage_url(tmp_path), retry=60), study_name="q")
    space = parse_search_space({"x": "interval(0.0, 1.0)"}, [])
    calls = []

    def launch(specs: list) -> list[JobOutcome]:
        calls.append(1)
        return [JobOutcome(None, failed=True, error="RuntimeError: boom")]

    worker = StudyWorker(study, space, launch, n_trials=10, max_failure_rate=0.2)
    try:
        worker.run()
    except SweepFailed as err:
        assert "3 trial(s) failed, more than `hydra.sweeper.max_failure_rate`=0.2 of n_trials=10" in str(err)
    else:
        raise AssertionError("the sweep did not stop")
    assert len(calls) == 3  # the third failure exceeds 0.2 x 10; no fourth job starts
