"""Real sweep workers on one study: PostgreSQL and the default SQLite file, pruning inside the jobs, a worker
killed with SIGKILL, an interrupted and resumed sweep, submitit's local executor, DDP and two simulated nodes.

Every worker is a real ``python -m lightning_reg.train -m ...`` process; the study is read back with Optuna.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweep_workers import ALWAYS_PRUNE, FAST, command, env, load, start, wait_all, wait_for

pytestmark = pytest.mark.slow

GRID = [
    "hparams_search=digits_random",
    "hydra/sweeper/lightning_reg_sampler=grid",
    "hydra/sweeper/lightning_reg_pruner=median",
    "hydra.sweeper.pruner.n_startup_trials=2",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "optimizer.lr=choice(0.0001,0.001,0.01)",
    "model.dropout=choice(0.0,0.3,0.6)",
    "data.batch_size=64",
    "hydra.sweeper.n_trials=9",
    "trainer.max_epochs=4",
    "hydra.sweeper.poll_interval=0.5",
]


def sqlite_url(sweep: Path) -> str:
    return f"sqlite:///{sweep / 'optuna.db'}"


def metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_three_workers_share_one_study_and_prune(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    sweep = tmp_path / "sweep"
    name = f"grid_{backend}"
    extra = [f"hydra.sweeper.study_name={name}"]
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        extra.append(f"hydra.sweeper.storage={url}")
    else:
        url = sqlite_url(sweep)  # the default: a file in the sweep directory
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    procs = [start(sweep, *GRID, *FAST, *extra, log=log) for log in logs]
    wait_all(procs, logs)

    study = load(url, name)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 9, [(t.number, t.state) for t in trials]
    # Surplus draws (a worker that lost the race for the last slot) are the only other trials, never run.
    for t in trials:
        if t not in finished:
            assert t.user_attrs.get("lightning_reg:status") == "surplus", (t.number, t.state, t.user_attrs)
            assert not (sweep / str(t.number)).exists()
    grid_points = {(t.params["optimizer.lr"], t.params["model.dropout"]) for t in finished}
    assert len(grid_points) == 9  # every point once: no duplicate parameter set
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped no trial"
    for t in finished:
        m = metrics(sweep / str(t.number))
        assert m["config"]["optimizer"]["lr"] == t.params["optimizer.lr"]
        if t.state == TrialState.PRUNED:
            assert m["status"] == "pruned" and m["pruned_epoch"] == t.user_attrs["lightning_reg:pruned_epoch"]
            assert m["epochs_completed"] == m["pruned_epoch"] + 1 <= 4  # pruned after the last epoch too
            assert t.intermediate_values and max(t.intermediate_values) == m["pruned_epoch"]
        else:
            assert m["status"] == "completed" and m["epochs_completed"] == 4
            assert t.value == pytest.approx(m["optimized_value"])
    workers = {t.user_attrs["lightning_reg:worker"] for t in finished}
    assert len(workers) == 3  # all three workers took trials
    assert (sweep / "report.md").is_file() and "pruned" in (sweep / "report.md").read_text()


def test_a_killed_worker_trial_fails_and_is_retried(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    url = sqlite_url(sweep)
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=6",
        "hydra.sweeper.poll_interval=0.5",
        "trainer.max_epochs=30",
        *FAST,
    ]
    victim = start(sweep, *args, log=tmp_path / "victim.log")

    def running() -> list:
        if not (sweep / "optuna.db").exists():
            return []
        try:
            return [
                t
                for t in load(url, "digits_random").get_trials(deepcopy=False)
                if t.state == TrialState.RUNNING and (sweep / str(t.number) / "csv").exists()
            ]
        except Exception:  # noqa: BLE001 - the study may not exist yet
            return []

    killed = wait_for(running, 120, "the first worker to be training a trial")[0]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    log = tmp_path / "rescuer.log"
    wait_all([start(sweep, *args, log=log)], [log])

    trials = load(url, "digits_random").get_trials(deepcopy=False)
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == TrialState.FAIL
    assert not (sweep / str(killed.number) / "metrics.json").exists()
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params
    assert retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    for t in finished:
        assert metrics(sweep / str(t.number))["status"] in ("completed", "pruned")


def test_an_interrupted_sweep_resumes_without_repeating_a_finished_trial(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    url = sqlite_url(sweep)
    args = ["hparams_search=digits_random", "hydra.sweeper.n_trials=4", "trainer.max_epochs=12", *FAST]
    first = start(sweep, *args, log=tmp_path / "first.log")

    def two_done() -> list:
        if not (sweep / "optuna.db").exists():
            return []
        try:
            trials = load(url, "digits_random").get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001
            return []
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        return done if len(done) >= 2 and any(t.state == TrialState.RUNNING for t in trials) else []

    done_before = wait_for(two_done, 180, "two finished trials and a third running")
    first.send_signal(signal.SIGINT)
    assert first.wait(timeout=60) != 0
    sums = {
        t.number: hashlib.md5((sweep / str(t.number) / "metrics.json").read_bytes()).hexdigest() for t in done_before
    }
    interrupted = [
        t
        for t in load(url, "digits_random").get_trials(deepcopy=False)
        if t.user_attrs.get("lightning_reg:status") == "interrupted"
    ]
    # Ctrl-C mid-job fails the running trial and queues it again; one that lands between jobs (or that Python
    # swallows in a finalizer) stops the worker after it told the running trial.
    assert len(interrupted) <= 1 and all(t.state == TrialState.FAIL for t in interrupted)

    log = tmp_path / "second.log"
    wait_all([start(sweep, *args, log=log)], [log])
    assert "resuming study 'digits_random'" in log.read_text()
    trials = load(url, "digits_random").get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 4
    for number, digest in sums.items():  # the finished trials were not run again
        assert hashlib.md5((sweep / str(number) / "metrics.json").read_bytes()).hexdigest() == digest
    # The interrupted trial's parameters were queued and run by the resumed sweep.
    assert not interrupted or any(
        t.params == interrupted[0].params and t.user_attrs.get("lightning_reg:retry_of") == interrupted[0].number
        for t in finished
    )
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 4


def test_submitit_local_jobs_join_the_study_report_and_prune(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    log = tmp_path / "submitit.log"
    args = [
        "hparams_search=digits_random",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "trainer.max_epochs=5",
        *ALWAYS_PRUNE,
        *FAST,
    ]
    wait_all([start(sweep, *args, log=log)], [log], timeout=400)
    trials = load(sqlite_url(sweep), "digits_random").get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for t in trials:
        m = metrics(sweep / str(t.number))
        assert m["status"] == "pruned" and m["pruned_epoch"] == 1 and m["epochs_completed"] == 2
        assert t.intermediate_values.keys() == {0, 1}
        # The job ran in a submitit process of its own, not in the sweeper's.
        assert m["config"]["optimizer"]["lr"] == t.params["optimizer.lr"]
    assert list((sweep / ".submitit").iterdir())


PROBE = """
import json, pathlib
import lightning.pytorch as pl

class RankProbe(pl.Callback):
    def __init__(self, out_dir):
        self.out_dir = pathlib.Path(out_dir)
    def on_train_end(self, trainer, pl_module):
        seen = {"world_size": trainer.world_size, "lr": trainer.optimizers[0].param_groups[0]["lr"],
                "dropout": pl_module.hparams["dropout"], "last_epoch": trainer.current_epoch,
                "should_stop": trainer.should_stop}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(seen))
"""

PROBE_ARGS = ["+callbacks.probe._target_=rank_probe.RankProbe", "+callbacks.probe.out_dir=${paths.output_dir}"]


def _probe(tmp_path: Path) -> Path:
    (tmp_path / "probe").mkdir(exist_ok=True)
    (tmp_path / "probe" / "rank_probe.py").write_text(PROBE)
    return tmp_path / "probe"


def test_ddp_ranks_stop_at_the_same_epoch_and_the_trial_is_pruned_once(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    log = tmp_path / "ddp.log"
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=1",
        "trainer=ddp_cpu",
        "trainer.max_epochs=4",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        *ALWAYS_PRUNE,
        *PROBE_ARGS,
    ]
    wait_all([start(sweep, *args, log=log, extra_path=_probe(tmp_path))], [log], timeout=300)
    (trial,) = load(sqlite_url(sweep), "digits_random").get_trials(deepcopy=False)
    assert trial.state == TrialState.PRUNED and trial.user_attrs["lightning_reg:pruned_epoch"] == 1
    ranks = [json.loads((sweep / "0" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["last_epoch"] == ranks[1]["last_epoch"] == 2
    assert ranks[0]["lr"] == ranks[1]["lr"] == trial.params["optimizer.lr"]
    assert metrics(sweep / "0")["status"] == "pruned"


def test_two_nodes_train_node_zeros_trials_and_stop_together(tmp_path: Path) -> None:
    from postgres import free_port

    sweep = tmp_path / "sweep"
    probe = _probe(tmp_path)
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=2",
        "trainer=ddp_cpu",
        "trainer.devices=1",
        "+trainer.num_nodes=2",
        "trainer.max_epochs=4",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "hydra.sweeper.poll_interval=0.3",
        "hydra.sweeper.sampler.seed=null",
        *ALWAYS_PRUNE,
        *PROBE_ARGS,
    ]
    port = str(free_port())
    logs = [tmp_path / f"node{n}.log" for n in (0, 1)]
    procs = [
        start(sweep, *args, log=logs[n], extra_path=probe, NODE_RANK=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        for n in (0, 1)
    ]
    wait_all(procs, logs, timeout=400)
    trials = load(sqlite_url(sweep), "digits_random").get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]  # node 1 drew no trial of its own
    for t in trials:
        node0 = json.loads((sweep / str(t.number) / "rank0.json").read_text())
        node1 = json.loads((sweep / str(t.number) / "node1" / "rank1.json").read_text())
        assert node0["world_size"] == node1["world_size"] == 2
        assert node0["lr"] == node1["lr"] == t.params["optimizer.lr"]
        assert node0["dropout"] == node1["dropout"] == t.params["model.dropout"]
        assert node0["last_epoch"] == node1["last_epoch"] == 2


def test_folds_and_confirmed_winners_share_one_mechanism(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    log = tmp_path / "cv.log"
    args = [
        "hparams_search=digits_random",
        "hydra/sweeper/lightning_reg_sampler=grid",
        "optimizer.lr=choice(0.001,0.01)",
        "model.dropout=0.0",
        "data.batch_size=64",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.folds=2",
        "hydra.sweeper.confirm.top_k=1",
        "hydra.sweeper.confirm.seeds=[1,2]",
        "trainer.max_epochs=3",
        *FAST,
    ]
    wait_all([start(sweep, *args, log=log)], [log])
    study = load(sqlite_url(sweep), "digits_random")
    for t in study.get_trials(deepcopy=False):
        assert t.state == TrialState.COMPLETE
        folds = [metrics(sweep / str(t.number) / f"fold{i}") for i in (0, 1)]
        assert [f["config"]["data"]["fold"] for f in folds] == [0, 1]
        assert all(f["config"]["data"]["num_folds"] == 2 for f in folds)
        assert t.value == pytest.approx(sum(f["optimized_value"] for f in folds) / 2)
        assert not any(f["test"] for f in folds)  # a search never tests
    (row,) = study.user_attrs["lightning_reg:confirm"]
    best = max(study.get_trials(deepcopy=False), key=lambda t: t.value)
    assert row["trial"] == best.number and row["seeds"] == [1, 2]
    runs = [metrics(sweep / "confirm" / str(best.number) / f"seed{s}") for s in (1, 2)]
    assert [r["seed"] for r in runs] == [1, 2] and all("test/acc" in r["test"] for r in runs)
    assert row["values"] == pytest.approx([r["optimized_value"] for r in runs])
    assert row["summary"]["mean"] == pytest.approx(sum(row["values"]) / 2)
    md = (sweep / "report.md").read_text()
    assert "Confirmed winners" in md and "test/acc over seeds" in md


def test_a_storage_that_cannot_be_reached_stops_before_any_trial(tmp_path: Path) -> None:
    from postgres import free_port

    sweep = tmp_path / "sweep"
    url = f"postgresql://sweeper:hunter2@127.0.0.1:{free_port()}/optuna"
    proc = subprocess.run(
        command(sweep, "hparams_search=digits_random", f"hydra.sweeper.storage={url}", *FAST),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot open the study storage" in out and "sweeper:***@127.0.0.1" in out
    assert "hunter2" not in out
    assert not any(p.name.isdigit() for p in sweep.iterdir()) if sweep.exists() else True


def test_a_pruned_fold_stops_the_trials_other_folds(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    log = tmp_path / "cvprune.log"
    args = [
        "hparams_search=digits_random",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.folds=2",
        "trainer.max_epochs=5",
        *ALWAYS_PRUNE,
        *FAST,
    ]
    wait_all([start(sweep, *args, log=log)], [log])
    (trial,) = load(sqlite_url(sweep), "digits_random").get_trials(deepcopy=False)
    assert trial.state == TrialState.PRUNED
    fold0, fold1 = (metrics(sweep / "0" / f"fold{i}") for i in (0, 1))
    assert fold0["status"] == "pruned" and fold0["pruned_epoch"] == 1  # the pruner judged the running mean
    assert fold1["status"] == "pruned" and fold1["pruned_epoch"] == 0  # stopped because fold 0 was pruned
    # The trial's intermediate values are the folds' per-epoch means.
    rep0, rep1 = (next(v["reported"] for k, v in f["callbacks"].items() if "TrialPruning" in k) for f in (fold0, fold1))
    assert trial.intermediate_values == pytest.approx({0: (rep0["0"] + rep1["0"]) / 2, 1: rep0["1"]})
