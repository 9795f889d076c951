"""SIGTERM (a SLURM preemption, ``scancel``) ends a run or a sweep worker with status 143 after ``last.ckpt`` and a
``metrics.json`` with ``status: interrupted`` are written; the run resumes with ``ckpt_path=last``, and a worker's
trial is failed, queued once again, and its retry resumes the job's directory from that checkpoint.

Real processes, a real signal, a real SQLite study: nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from optuna.trial import TrialState

from sweep_workers import FAST, env, load, start, wait_all, wait_for

REPO = Path(__file__).resolve().parents[2]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_sigterm_ends_a_run_with_143_and_it_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "lightning_reg.train", f"hydra.run.dir={run}", "trainer.enable_progress_bar=false"]
    proc = subprocess.Popen(
        [*cmd, "trainer.max_epochs=400"], cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    # last.ckpt stays once written (the best checkpoint's name changes with each better epoch: a poll can miss it).
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    text = stderr.decode()
    assert proc.returncode == 143, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "interrupted by SIGTERM" in text and "resume with ckpt_path=last" in text
    record = _metrics(run)
    assert record["status"] == "interrupted"
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert state["global_step"] > 0
    assert not [p for p in run.rglob("*.tmp")]

    epochs = state["epoch"] + 3
    resumed = subprocess.run(
        [*cmd, f"trainer.max_epochs={epochs}", "ckpt_path=last"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stderr + resumed.stdout
    assert _metrics(run)["status"] == "completed" and _metrics(run)["epochs_completed"] == epochs
    assert json.loads((run / "metrics.interrupted-1.json").read_text())["status"] == "interrupted"  # kept


def test_sigterm_ends_a_worker_with_143_and_the_retry_resumes_the_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    url = f"sqlite:///{sweep / 'optuna.db'}"
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.poll_interval=0.5",
        "trainer.max_epochs=60",
        *FAST,
    ]
    victim = start(sweep, *args, log=tmp_path / "victim.log")

    def training() -> list:
        if not (sweep / "optuna.db").exists():
            return []
        try:
            trials = load(url, "digits_random").get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the study may not exist yet
            return []
        return [
            t
            for t in trials
            if t.state == TrialState.RUNNING and (sweep / str(t.number) / "checkpoints" / "last.ckpt").exists()
        ]

    hit = wait_for(training, 180, "the worker to be training a trial")[0]
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(timeout=120) == 143, (tmp_path / "victim.log").read_text()[-4000:]
    time.sleep(0.5)
    try:  # every process the worker started ended with it (its own session)
        os.killpg(victim.pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "a process of the worker's session outlived it"

    job = sweep / str(hit.number)
    assert _metrics(job)["status"] == "interrupted"
    trials = load(url, "digits_random").get_trials(deepcopy=False)
    failed = next(t for t in trials if t.number == hit.number)
    assert failed.state == TrialState.FAIL and failed.user_attrs["lightning_reg:status"] == "interrupted"
    queued = [t for t in trials if t.user_attrs.get("lightning_reg:retry_of") == hit.number]
    assert len(queued) == 1 and queued[0].state == TrialState.WAITING
    assert queued[0].system_attrs["fixed_params"] == hit.params  # a waiting trial holds its params here

    log = tmp_path / "second.log"
    wait_all([start(sweep, *args, log=log)], [log])
    trials = load(url, "digits_random").get_trials(deepcopy=False)
    retry = next(t for t in trials if t.user_attrs.get("lightning_reg:retry_of") == hit.number)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["lightning_reg:subdir"] == str(hit.number)
    assert f"Restoring states from the checkpoint path at {job / 'checkpoints' / 'last.ckpt'}" in log.read_text()
    assert _metrics(job)["status"] == "completed" and _metrics(job)["epochs_completed"] == 60
    assert _metrics(job)["optimized_value"] == retry.value
    assert json.loads((job / "metrics.interrupted-1.json").read_text())["status"] == "interrupted"
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2


def _alive_in_session(sid: int) -> list[str]:
    """The processes of session ``sid`` that still run (exited ones not yet reaped do not count)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(entry)
    return out


SLOW_END = """
import time
import lightning.pytorch as pl
from hydra.core.hydra_config import HydraConfig


class SlowToEnd(pl.Callback):
    def on_exception(self, trainer, pl_module, exception):
        if str(HydraConfig.get().sweep.subdir) == "1":
            time.sleep(5)
"""


def test_sigterm_reaches_the_jobs_a_joblib_worker_runs_in_other_processes(tmp_path: Path) -> None:
    # A plain `kill <worker pid>` signals the worker only; its jobs train in joblib's (loky's) processes. Before,
    # the worker waited for them and never exited; now it forwards the signal, and both jobs end as an in-process
    # job does: last.ckpt, metrics.json `interrupted`, the trials failed and queued again, exit status 143.
    if not os.path.isdir("/proc"):
        import pytest

        pytest.skip("finding a worker's child processes needs Linux's /proc")
    sweep = tmp_path / "sweep"
    url = f"sqlite:///{sweep / 'optuna.db'}"
    # Trial 1's job takes 5 s longer than trial 0's to end after the signal (a slower machine, a bigger model): joblib
    # kills the jobs still running as soon as one job ends in an exception, so the worker must wait for both.
    (tmp_path / "slow_end.py").write_text(SLOW_END)
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "trainer.max_epochs=5000",
        "+callbacks.slow_end._target_=slow_end.SlowToEnd",
        *FAST,
    ]
    victim = start(sweep, *args, log=tmp_path / "victim.log", extra_path=tmp_path)
    wait_for(lambda: len(list(sweep.glob("*/checkpoints/last.ckpt"))) >= 2, 300, "both jobs to be training")
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(timeout=180) == 143, (tmp_path / "victim.log").read_text()[-4000:]
    wait_for(lambda: not _alive_in_session(victim.pid), 30, "every process of the worker's session to end")

    trials = load(url, "digits_random").get_trials(deepcopy=False)
    interrupted = [t for t in trials if t.user_attrs.get("lightning_reg:status") == "interrupted"]
    assert sorted(t.number for t in interrupted) == [0, 1] and all(t.state == TrialState.FAIL for t in interrupted)
    queued = sorted(t.user_attrs.get("lightning_reg:retry_of") for t in trials if t.state == TrialState.WAITING)
    assert queued == [0, 1]
    for number in (0, 1):
        assert _metrics(sweep / str(number))["status"] == "interrupted"


def test_sigterm_under_ddp_ends_every_rank_and_the_retry_resumes_on_both(tmp_path: Path) -> None:
    # The job trains under DDP (2 CPU processes): the worker (rank 0) gets SIGTERM, as from `kill <pid>`; rank 1
    # is a child the job started. Every process of the worker's session ends, the worker exits 143 after last.ckpt
    # and metrics.json `interrupted`, and the retry resumes the job under DDP from that checkpoint.
    sweep = tmp_path / "sweep"
    url = f"sqlite:///{sweep / 'optuna.db'}"
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=1",
        "trainer=ddp_cpu",
        "trainer.max_epochs=150",  # 0.1-0.2 s an epoch: the signal lands mid-run
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    victim = start(sweep, *args, log=tmp_path / "victim.log")
    wait_for(lambda: (sweep / "0" / "checkpoints" / "last.ckpt").exists(), 240, "the DDP job to be training")
    victim.send_signal(signal.SIGTERM)
    assert victim.wait(timeout=180) == 143, (tmp_path / "victim.log").read_text()[-4000:]
    if os.path.isdir("/proc"):
        wait_for(lambda: not _alive_in_session(victim.pid), 30, "every process of the worker's session to end")
    job = sweep / "0"
    assert _metrics(job)["status"] == "interrupted"
    interrupted_at = torch.load(job / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["epoch"]
    trials = load(url, "digits_random").get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["lightning_reg:status"] == "interrupted"

    log = tmp_path / "second.log"
    wait_all([start(sweep, *args, log=log)], [log], timeout=400)
    trials = load(url, "digits_random").get_trials(deepcopy=False)
    retry = next(t for t in trials if t.user_attrs.get("lightning_reg:retry_of") == 0)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["lightning_reg:subdir"] == "0"
    assert f"Restoring states from the checkpoint path at {job / 'checkpoints' / 'last.ckpt'}" in log.read_text()
    done = _metrics(job)
    assert done["status"] == "completed" and done["epochs_completed"] == 150 and done["world_size"] == 2
    assert 0 < interrupted_at < 150
