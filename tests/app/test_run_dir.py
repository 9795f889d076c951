"""The run-directory lifecycle through the real entry point (``python -m lightning_reg.train``): new, unfinished
and finished run directories, resume appending to the CSV log, sweeps that may not share a directory, and a
multirun interrupted by SIGINT that still writes its report."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_reg.app.run_dir import RunDirError, check_run_dir, check_sweep_dir, run_state

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
TINY = ["trainer=debug", "trainer.max_epochs=4", "seed=3"]


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")] if p),
    }
    env.pop("LOCAL_RANK", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", *args, f"paths.log_dir={cwd / 'outputs'}"],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def digest(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` (relative path -> hash)."""
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def csv_epochs(run: Path) -> list[int]:
    """The epochs with a validation row in ``csv/metrics.csv``."""
    with (run / "csv" / "metrics.csv").open() as f:
        return sorted({int(float(r["epoch"])) for r in csv.DictReader(f) if r.get("val/loss") not in (None, "")})


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory) -> dict:
    """One run killed with SIGKILL at the start of epoch 2, then every way of writing into it, in order."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    run = tmp / "A"
    out: dict = {"tmp": tmp, "run": run}
    killed = cli(
        *TINY,
        f"hydra.run.dir={run}",
        "+callbacks.killer._target_=helpers.KillAtEpoch",
        "+callbacks.killer.epoch=2",
        cwd=tmp,
    )
    out["killed"] = killed
    out["after_kill"] = digest(run)
    out["epochs_after_kill"] = csv_epochs(run)
    out["state_after_kill"] = run_state(run)
    out["log_after_kill"] = (run / "train.log").read_bytes()
    # Without ckpt_path: refused, nothing touched.
    out["rerun"] = cli(*TINY, f"hydra.run.dir={run}", cwd=tmp)
    out["after_rerun"] = digest(run)
    # Another run's checkpoint into it: refused, nothing touched.
    foreign = tmp / "elsewhere" / "other.ckpt"
    foreign.parent.mkdir()
    foreign.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    out["foreign"] = cli(*TINY, f"hydra.run.dir={run}", f"ckpt_path={foreign}", cwd=tmp)
    out["after_foreign"] = digest(run)
    # The resume the refusal named.
    out["resume"] = cli(*TINY, f"hydra.run.dir={run}", "ckpt_path=last", cwd=tmp)
    out["after_resume"] = digest(run)
    out["log_after_resume"] = (run / "train.log").read_bytes()
    # Finished now: another seed into it is refused before Hydra rewrites .hydra/.
    out["finished_rerun"] = cli("trainer=debug", "seed=7", "optimizer.lr=0.005", f"hydra.run.dir={run}", cwd=tmp)
    out["after_finished_rerun"] = digest(run)
    out["finished_ckpt"] = cli(*TINY, f"hydra.run.dir={run}", "ckpt_path=last", cwd=tmp)
    out["after_finished_ckpt"] = digest(run)
    return out


def test_a_killed_run_is_unfinished_and_keeps_its_checkpoint(lifecycle) -> None:
    assert lifecycle["killed"].returncode == -signal.SIGKILL, lifecycle["killed"].stderr[-2000:]
    assert lifecycle["state_after_kill"] == "unfinished"
    assert "checkpoints/last.ckpt" in lifecycle["after_kill"]
    assert "metrics.json" not in lifecycle["after_kill"]


def test_rerun_into_an_unfinished_run_is_refused_with_the_resume_command(lifecycle) -> None:
    proc = lifecycle["rerun"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unfinished run" in proc.stderr and "ckpt_path=last" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert lifecycle["after_rerun"] == lifecycle["after_kill"]  # last.ckpt, csv and .hydra/* untouched


def test_another_runs_checkpoint_is_refused_in_an_unfinished_run(lifecycle) -> None:
    proc = lifecycle["foreign"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "is not a checkpoint of the unfinished run" in proc.stderr and "other.ckpt" in proc.stderr
    assert lifecycle["after_foreign"] == lifecycle["after_kill"]


def test_resume_with_ckpt_path_last_completes_and_appends_to_the_csv_log(lifecycle) -> None:
    proc = lifecycle["resume"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((lifecycle["run"] / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 4
    assert lifecycle["epochs_after_kill"] == [0, 1]
    assert csv_epochs(lifecycle["run"]) == [0, 1, 2, 3]  # the epochs before the kill are still there
    assert "will be deleted" not in proc.stderr


def test_resume_appends_to_train_log_and_keeps_every_earlier_byte(lifecycle) -> None:
    before, after = lifecycle["log_after_kill"], lifecycle["log_after_resume"]
    assert b"Seed set to" in before  # the killed run had logged its start
    assert after.startswith(before) and len(after) > len(before)
    assert after.count(b"Seed set to") == before.count(b"Seed set to") + 1  # one more start: the resume's


def test_a_finished_run_is_refused_before_hydra_writes_anything(lifecycle) -> None:
    for key in ("finished_rerun", "finished_ckpt"):
        proc = lifecycle[key]
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "already holds metrics.json" in proc.stderr and "refusing to overwrite" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert lifecycle[f"after_{key}"] == lifecycle["after_resume"], key  # .hydra/config.yaml included


def _sweep(tmp: Path, sweep: Path, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return cli(
        "-m",
        "trainer=debug",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.report.plots=false",
        *overrides,
        cwd=tmp,
        timeout=timeout,
    )


def test_a_second_sweep_into_a_sweep_directory_is_refused_and_the_same_sweep_resumes(tmp_path: Path) -> None:
    sweep = tmp_path / "S"
    first = _sweep(tmp_path, sweep, "model.dropout=0.0,0.5")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digest(sweep)
    assert "0/metrics.json" in before and "1/metrics.json" in before and "report.md" in before

    other = _sweep(tmp_path, sweep, "model.dropout=0.7,0.9")
    assert other.returncode == 2, other.stderr[-3000:]
    assert "holds another sweep" in other.stderr and "model.dropout=0.7,0.9" in other.stderr
    assert "Traceback" not in other.stderr
    assert digest(sweep) == before  # multirun.yaml, .hydra/*, report.* and metrics.json all untouched

    same = _sweep(tmp_path, sweep, "model.dropout=0.0,0.5")
    assert same.returncode == 0, same.stderr[-3000:]
    assert same.stdout.count("skipped, metrics.json kept") == 2
    after = digest(sweep)
    for job in ("0", "1"):
        assert after[f"{job}/metrics.json"] == before[f"{job}/metrics.json"]
        assert after[f"{job}/checkpoints/last.ckpt"] == before[f"{job}/checkpoints/last.ckpt"]
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):  # Hydra rewrote them; they are put back
            assert after[f"{job}/.hydra/{name}"] == before[f"{job}/.hydra/{name}"], name
    assert after["multirun.yaml"] == before["multirun.yaml"]


def test_sigint_during_a_multirun_still_writes_the_report_saying_so(tmp_path: Path) -> None:
    sweep = tmp_path / "S"
    cmd = [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "-m",
        "trainer=debug",
        "trainer.max_epochs=1,500",
        f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.report.plots=false",
        f"paths.log_dir={tmp_path / 'o'}",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (sweep / "1" / "checkpoints" / "last.ckpt").exists():  # job 0 done, job 1 training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    last = sweep / "1" / "checkpoints" / "last.ckpt"
    proc.send_signal(signal.SIGINT)
    # A Ctrl-C that lands in a finalizer is swallowed by Python ("Exception ignored in ..."): when job 1 still writes
    # new epochs 2 s later, it trained on, and the user presses Ctrl-C again.
    for _ in range(10):
        seen = last.stat().st_mtime_ns
        time.sleep(2)
        if proc.poll() is not None or last.stat().st_mtime_ns == seen:
            break
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0, stderr[-3000:]
    md = (sweep / "report.md").read_text()
    assert "This multirun was interrupted (SIGINT)" in md, stdout[-2000:] + stderr[-2000:]
    assert "1 completed, 1 failed" in md
    assert "interrupted (SIGINT)" in stderr
    assert run_state(sweep / "1") == "unfinished"  # job 1 can be resumed; no failed metrics.json was written


# The pure checks, directly.


def test_check_run_dir_states(tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert check_run_dir(run, None) is None and run_state(run) == "new"
    with pytest.raises(Exception, match="ckpt_path=last.*does not exist"):
        check_run_dir(run, "last")
    assert check_run_dir(run, "last", allow_new_last=True) is None
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_state(run) == "unfinished"
    assert check_run_dir(run, "last") == run / "checkpoints" / "last.ckpt"
    (run / "metrics.json").write_text('{"status": "failed"}')
    assert run_state(run) == "unfinished"  # a failed run with checkpoints is resumable
    (run / "metrics.json").write_text('{"status": "completed"}')
    with pytest.raises(RunDirError, match="refusing to overwrite"):
        check_run_dir(run, "last")
    with pytest.raises(Exception, match="`ckpt_path` must be a checkpoint file path or 'last'; got 3"):
        check_run_dir(tmp_path / "other", 3)


def test_check_sweep_dir_refuses_a_run_directory(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RunDirError, match="holds runs but no multirun.yaml"):
        check_sweep_dir(tmp_path, ["a=1,2"])
