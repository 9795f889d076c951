"""A PostgreSQL outage while two sweep workers train: a real server, stopped and started by the test.

Every storage call of the workers and of their jobs' pruning links is retried with backoff through an outage
shorter than ``hydra.sweeper.storage_retry`` (one log line when it starts, one when it ends; the jobs keep
training and report later), and the study ends with every trial finished and none left running. An outage longer
than the budget stops the worker with a non-zero status and one line, its trial left for the heartbeat.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep_workers import FAST, load, start, wait_all, wait_for

STUDY = "outage"


class Postgres:
    """A PostgreSQL server of this test's own, so that it can stop and start it."""

    def __init__(self) -> None:
        import postgres

        self.mod = postgres
        self.server = postgres.start()
        self.port = int(self.server.url.rsplit(":", 1)[1].split("/")[0])
        self.url = self.server.url

    def _ctl(self, *args: str) -> None:
        assert self.server.data_dir is not None and self.server.pg_ctl is not None
        cmd = [self.server.pg_ctl, "-D", str(self.server.data_dir), *args]
        res = subprocess.run(
            self.mod._as_user(cmd, self.server.as_postgres), capture_output=True, text=True, timeout=120
        )
        assert res.returncode == 0, res.stderr[-2000:]

    def stop(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")  # as a crash would: connections dropped at once

    def start(self) -> None:
        base = self.server.data_dir.parent  # type: ignore[union-attr]
        opts = f"-p {self.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._ctl("-l", str(base / "server.log"), "-o", opts, "-w", "-t", "60", "start")


@pytest.fixture
def pg(monkeypatch: pytest.MonkeyPatch) -> Iterator[Postgres]:
    monkeypatch.delenv("LIGHTNING_REG_TEST_POSTGRES", raising=False)  # a server we may stop: our own
    try:
        server = Postgres()
    except RuntimeError as err:
        if os.environ.get("LIGHTNING_REG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but could not start: {err}")
        pytest.skip(f"no PostgreSQL server: {err}")
    yield server
    server.server.stop()


def _args(url: str, *more: str) -> list[str]:
    return [
        "hparams_search=digits_random",
        f"hydra.sweeper.storage={url}",
        f"hydra.sweeper.study_name={STUDY}",
        "hydra.sweeper.poll_interval=0.5",
        *FAST,
        *more,
    ]


def _training(url: str, sweeps: list[Path], n: int):  # noqa: ANN202
    def check() -> list:
        try:
            trials = load(url, STUDY).get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the study may not exist yet
            return []
        running = [
            t
            for t in trials
            if t.state == TrialState.RUNNING and any((s / str(t.number) / "csv").exists() for s in sweeps)
        ]
        return running if len(running) >= n else []

    return check


def test_two_workers_ride_out_a_postgres_outage(pg: Postgres, tmp_path: Path) -> None:
    args = _args(pg.url, "hydra.sweeper.n_trials=4", "trainer.max_epochs=40", "hydra.sweeper.storage_retry=120")
    sweeps = [tmp_path / "w0" / "sweep", tmp_path / "w1" / "sweep"]
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    for s in sweeps:
        s.parent.mkdir()
    procs = [start(s, *args, log=log) for s, log in zip(sweeps, logs)]
    wait_for(_training(pg.url, sweeps, 2), 240, "both workers to be training a trial")

    pg.stop()
    outage = 8.0
    time.sleep(outage)
    for p, log in zip(procs, logs):
        assert p.poll() is None, f"a worker died in the outage:\n{log.read_text()[-4000:]}"
    pg.start()
    wait_all(procs, logs, timeout=300)

    trials = load(pg.url, STUDY).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4, [
        (t.number, t.state.name, t.user_attrs.get("lightning_reg:status"), t.system_attrs) for t in trials
    ]
    text = "\n".join(log.read_text() for log in logs)
    # One line when the outage starts and one when it ends, per storage that saw it (worker or job).
    lines = text.splitlines()
    started = [line for line in lines if "the study storage cannot be reached" in line and "pruning" not in line]
    ended = [line for line in lines if "the study storage reachable again after" in line]
    assert started and len(started) == len(ended), text[-4000:]
    # A job's report that could not reach the database waited and was sent later: every epoch is reported.
    for t in finished:
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values))), t.intermediate_values


def test_an_outage_longer_than_the_budget_stops_the_worker_with_one_line(pg: Postgres, tmp_path: Path) -> None:
    args = _args(pg.url, "hydra.sweeper.n_trials=2", "trainer.max_epochs=400", "hydra.sweeper.storage_retry=3")
    sweep = tmp_path / "sweep"
    log = tmp_path / "worker.log"
    proc = start(sweep, *args, log=log)
    running = wait_for(_training(pg.url, [sweep], 1), 240, "the worker to be training a trial")[0]
    pg.stop()
    try:
        code = proc.wait(timeout=180)
    finally:
        pg.start()
    text = log.read_text()
    assert code != 0, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("lightning_reg: error:")]
    assert len(errors) == 1 and "could not be reached for" in errors[0] and "storage_retry=3" in errors[0], text[-4000:]
    assert "Traceback" not in text, text[-4000:]
    # The trial is left running, for the heartbeat to fail and retry once a worker is back.
    trial = next(t for t in load(pg.url, STUDY).get_trials(deepcopy=False) if t.number == running.number)
    assert trial.state == TrialState.RUNNING
