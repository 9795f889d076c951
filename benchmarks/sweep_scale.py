"""Sweep scale by simulation: W workers on one study whose jobs sleep a fixed time instead of training.

Each worker is a real process running our sweep worker, the code path of ``hydra/sweeper=lightning_reg_optuna``:
:func:`lightning_reg.study.setup.open_study` opens (or joins) the study with the sweeper's default options
(heartbeat every 10 s, poll 1 s, storage retry), and :class:`~lightning_reg.study.worker.StudyWorker` asks, runs,
heartbeats and tells until the study holds ``n_trials`` finished trials. Only the Hydra launcher is replaced:
the job sleeps ``job_s`` seconds and returns a value. The sampler is Optuna's RandomSampler (the engine's cost,
not TPE's, which grows with the trial count and is the same with or without us); no pruner (a sleeping job
reports nothing).

Workers are forked from this process once it has imported the sweeper (``open_study`` imports Lightning and
torch, ~13 s of CPU per process on the 2-core benchmark machine); each opens its own database connections after
the fork. The start-up measured here (fork to first trial) is therefore the engine's: opening the storage and
joining the study. A fresh interpreter adds the import, timed once and reported apart.

Measured per configuration (backend x W x job time):

- throughput in the steady state: trials told per minute between the moment every worker has started its first
  job and the moment the first worker finds no trial left, against the ideal W * 60 / job_s;
- latency of ask (``StudyWorker._ask``: create the trial, sample, check the slot), tell (``_tell``) and the loop's
  look at the study (``_trials``, which fails stale trials): median and p95 over every call of every worker;
- where each worker's time goes (job, ask, tell, loop look, failure-rate check, the rest: waiting for a slot);
- the database load: SQL statements per second from the heartbeat threads and in total (counted on every
  SQLAlchemy engine in the workers), and PostgreSQL's committed transactions per second (``pg_stat_database``).

PostgreSQL is a throwaway server (``initdb`` + ``pg_ctl`` as the postgres user when run as root, on a free port,
``max_connections=200``, ``fsync=off`` as in the tests), one fresh database per configuration, stopped at the end.
SQLite is one file per configuration (default: W <= 4 only). The load average is recorded with every
configuration: the machine this ran on is shared.

``--quick``: W = 2, 0.1 s jobs, 3 trials per worker (a smoke test of the same code).

    python -m benchmarks.sweep_scale [--quick] [--workers 1,4,16,32] [--job-seconds 1,5] [--backends postgres,sqlite]
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import base_parser, describe, machine_info, print_table, write_json

NAME = "sweep_scale"
PARAMS = {"x": "interval(0.0, 1.0)", "y": "choice(1, 2, 3)", "z": "tag(log, interval(1e-4, 1e-1))"}
PHASE_KEYS = ("job", "ask", "tell", "look", "failure_check")


# -- PostgreSQL ------------------------------------------------------------------------------------------------
class Postgres:
    """A throwaway PostgreSQL server in a temporary directory (as ``.ci/run`` starts one)."""

    def __init__(self, max_connections: int = 200) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = shutil.which("initdb") or (binaries[-1] if binaries else None)
        if initdb is None:
            raise RuntimeError("PostgreSQL's initdb is not installed")
        bindir = Path(initdb).parent
        self.pg_ctl = str(bindir / "pg_ctl")
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.base = Path(tempfile.mkdtemp(prefix="lr-bench-pg-"))
        if self.as_pg:
            shutil.chown(self.base, user="postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._run([initdb, "-D", str(self.base / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        opts = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections={max_connections}"
        )
        self._run(
            [self.pg_ctl, "-D", str(self.base / "data"), "-l", str(self.base / "server.log"), "-o", opts]
            + ["-w", "-t", "60", "start"]
        )
        self.version = self.scalar("SHOW server_version")

    def _run(self, cmd: list[str]) -> None:
        res = subprocess.run([*self.as_pg, *cmd], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {res.stderr.strip()[-400:]}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def scalar(self, sql: str, db: str = "postgres") -> Any:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url(db), isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.NullPool)
        try:
            with engine.connect() as con:
                result = con.execute(sqlalchemy.text(sql))
                return result.scalar() if result.returns_rows else None
        finally:
            engine.dispose()

    def create_db(self, name: str) -> str:
        self.scalar(f"CREATE DATABASE {name}")
        return self.url(name)

    def commits(self, db: str) -> int:
        return int(self.scalar(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'"))

    def stop(self) -> None:
        subprocess.run(
            [*self.as_pg, self.pg_ctl, "-D", str(self.base / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.base, ignore_errors=True)


# -- one worker process ------------------------------------------------------------------------------------------
def _count_statements(counts: dict[str, int], phase: list[str]) -> None:
    """Count every SQL statement of this process: the heartbeat thread's, and the main thread's by phase."""
    import sqlalchemy
    from sqlalchemy import event

    def before(*_args: Any) -> None:
        key = "heartbeat" if threading.current_thread().name == "lightning-reg-heartbeat" else phase[-1]
        counts[key] = counts.get(key, 0) + 1

    event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", before)


def worker_main(url: str, study_name: str, n_trials: int, job_s: float, sweep_dir: str, out: str) -> None:
    """One sweep worker: the sweeper's own open_study and StudyWorker, with a job that sleeps."""
    from omegaconf import OmegaConf

    from lightning_reg.study.setup import open_study
    from lightning_reg.study.worker import JobOutcome

    logging.getLogger("lightning_reg.study").setLevel(logging.WARNING)
    t0 = time.time()
    counts: dict[str, int] = {}
    phase = ["open"]
    _count_statements(counts, phase)
    config = OmegaConf.create({"optimized_metric": "val/loss", "hydra": {"sweep": {"dir": sweep_dir}}})
    options = {
        "direction": "minimize",
        "n_trials": n_trials,
        "storage": url,
        "study_name": study_name,
        "sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
        "pruner": None,
        "params": PARAMS,
    }
    plan = open_study(options, [], config)
    t_open = time.time()
    calls: dict[str, list[tuple[float, float]]] = {k: [] for k in (*PHASE_KEYS, "ask_look")}

    def launch(specs: Any) -> list[Any]:
        start = time.time()
        time.sleep(job_s)
        calls["job"].append((start, time.time()))
        return [JobOutcome(float(len(s.overrides))) for s in specs]

    worker = plan.worker(launch)

    depth = [0]

    def timed(key: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            start = time.time()
            depth[0] += 1
            phase.append(key if key != "look" or depth[0] == 1 else "ask_look")
            try:
                return fn(*a, **k)
            finally:
                phase.pop()
                depth[0] -= 1
                # A look inside an ask is part of the ask (counted there, listed apart as ask_look).
                calls[key if key != "look" or depth[0] == 0 else "ask_look"].append((start, time.time()))

        return wrapper

    worker._ask = timed("ask", worker._ask)  # type: ignore[method-assign]
    worker._tell = timed("tell", worker._tell)  # type: ignore[method-assign]
    worker._trials = timed("look", worker._trials)  # type: ignore[method-assign]
    worker._check_failure_rate = timed("failure_check", worker._check_failure_rate)  # type: ignore[method-assign]
    phase[-1] = "loop"
    told = worker.run()
    phase[-1] = "after"
    t_end = time.time()
    cpu = os.times()
    Path(out).write_text(
        json.dumps(
            {
                "t0": t0,
                "t_open": t_open,
                "t_end": t_end,
                "told": len(told),
                "calls": calls,
                "statements": counts,
                "cpu_s": cpu.user + cpu.system,
            }
        )
    )


# -- one configuration ------------------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def run_config(backend: str, workers: int, job_s: float, per_worker: int, pg: Postgres | None, tag: str) -> dict:
    import multiprocessing as mp

    base = Path(tempfile.mkdtemp(prefix="lr-bench-scale-"))
    db = f"scale_{tag}"
    url = pg.create_db(db) if backend == "postgres" and pg is not None else f"sqlite:///{base / 'optuna.db'}"
    n_trials = workers * per_worker
    ctx = mp.get_context("fork")
    load_start = [round(v, 2) for v in os.getloadavg()]
    commits0 = pg.commits(db) if backend == "postgres" and pg is not None else None
    started = time.time()
    procs = []
    for i in range(workers):
        out = str(base / f"worker{i}.json")
        p = ctx.Process(target=worker_main, args=(url, "scale", n_trials, job_s, str(base / "sweep"), out))
        p.start()
        procs.append((p, out))
    for p, _ in procs:
        p.join(timeout=3600)
    ended = time.time()
    commits1 = pg.commits(db) if backend == "postgres" and pg is not None else None
    load_end = [round(v, 2) for v in os.getloadavg()]
    bad = [p.exitcode for p, _ in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} worker(s) of {backend} W={workers} job={job_s}s failed: exit codes {bad}")
    res = [json.loads(Path(out).read_text()) for _, out in procs]
    shutil.rmtree(base, ignore_errors=True)

    tells = sorted(end for r in res for _, end in r["calls"]["tell"])
    first_jobs = [min(s for s, _ in r["calls"]["job"]) for r in res if r["calls"]["job"]]
    last_tells = [max(e for _, e in r["calls"]["tell"]) for r in res if r["calls"]["tell"]]
    window = (max(first_jobs), min(last_tells))
    in_window = [t for t in tells if window[0] < t <= window[1]]
    span = window[1] - window[0]
    per_min = 60.0 * len(in_window) / span if span > 0 else float("nan")
    ideal = 60.0 * workers / job_s
    lat = {
        k: {
            "median_ms": round(1000 * statistics.median(d), 1) if d else None,
            "p95_ms": round(1000 * pct(d, 0.95), 1) if d else None,
            "n": len(d),
        }
        for k in ("ask", "ask_look", "tell", "look", "failure_check")
        for d in [[e - s for r in res for s, e in r["calls"][k]]]
    }
    wall = sum(r["t_end"] - r["t_open"] for r in res)
    phase = {k: sum(e - s for r in res for s, e in r["calls"][k]) for k in PHASE_KEYS}
    phase_pct = {k: round(100 * v / wall, 2) for k, v in phase.items()}
    phase_pct["rest"] = round(100 - sum(phase_pct.values()), 2)
    duration = ended - started
    heartbeat = sum(r["statements"].get("heartbeat", 0) for r in res)
    statements = sum(sum(r["statements"].values()) for r in res)
    told = sum(r["told"] for r in res)
    by_phase: dict[str, int] = {}
    for r in res:
        for key, n in r["statements"].items():
            by_phase[key] = by_phase.get(key, 0) + n
    out: dict[str, Any] = {
        "backend": backend,
        "workers": workers,
        "job_s": job_s,
        "n_trials": n_trials,
        "told": told,
        "trials_per_min": round(per_min, 2),
        "ideal_per_min": round(ideal, 2),
        "efficiency": round(per_min / ideal, 4),
        "window_s": round(span, 2),
        "trials_in_window": len(in_window),
        "wall_s": round(duration, 2),
        "startup_s": {
            "median": round(statistics.median(r["t_open"] - started for r in res), 2),
            "max": round(max(r["t_open"] - started for r in res), 2),
            "to_all_in_job": round(window[0] - started, 2),
        },
        "latency": lat,
        "time_pct": phase_pct,
        "cpu_ms_per_trial": round(1000 * sum(r["cpu_s"] for r in res) / max(1, told), 1),
        "statements_per_s": round(statements / duration, 1),
        "heartbeat_statements_per_s": round(heartbeat / duration, 2),
        "statements_per_trial": {k: round(v / max(1, told), 2) for k, v in sorted(by_phase.items())},
        "load_avg_start": load_start,
        "load_avg_end": load_end,
    }
    if commits0 is not None and commits1 is not None:
        out["pg_commits_per_s"] = round((commits1 - commits0) / duration, 1)
    return out


def fresh_import_s() -> float:
    """Seconds a fresh interpreter takes to import the sweeper's study setup (each real worker pays it once)."""
    start = time.time()
    subprocess.run([sys.executable, "-c", "import lightning_reg.study.setup"], check=True, timeout=600)
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4,16,32", help="comma-separated worker counts")
    parser.add_argument("--job-seconds", default="5,1", help="comma-separated job times (s)")
    parser.add_argument("--backends", default="postgres,sqlite", help="postgres, sqlite or both")
    parser.add_argument("--sqlite-max-workers", type=int, default=4, help="SQLite runs only up to this W")
    parser.add_argument("--window-s", type=float, default=40.0, help="target steady-state seconds per configuration")
    parser.add_argument("--min-trials-per-worker", type=int, default=6)
    parser.add_argument("--max-trials", type=int, default=480, help="cap on n_trials per configuration")
    args = parser.parse_args(argv)
    if args.quick:
        workers, job_times, per_worker_fixed = [2], [0.1], 3
    else:
        workers = [int(w) for w in args.workers.split(",")]
        job_times = [float(j) for j in args.job_seconds.split(",")]
        per_worker_fixed = None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    info = machine_info()
    print(describe(info))
    import optuna
    import sqlalchemy

    info.update(optuna=optuna.__version__, sqlalchemy=sqlalchemy.__version__)
    # The parent imports the sweeper once; the workers are forked from it (see the module docstring).
    import lightning_reg.study.setup  # noqa: F401

    pg: Postgres | None = None
    skipped: list[str] = []
    if "postgres" in backends:
        try:
            pg = Postgres(max_connections=max(100, 4 * max(workers) + 20))
            info["postgres"] = pg.version
        except RuntimeError as err:
            if not args.quick:
                raise
            skipped.append(f"postgres: {err}")
            backends.remove("postgres")
    rows: list[dict[str, Any]] = []
    try:
        k = 0
        for job_s in job_times:
            for w in workers:
                for backend in backends:
                    if backend == "sqlite" and w > args.sqlite_max_workers:
                        continue
                    per_worker = per_worker_fixed or max(
                        args.min_trials_per_worker, min(int(args.window_s / job_s) + 2, args.max_trials // w)
                    )
                    k += 1
                    row = run_config(backend, w, job_s, per_worker, pg, f"{k}_{w}_{int(job_s * 10)}_{backend[:2]}")
                    rows.append(row)
                    print(
                        f"{backend:8s} W={w:2d} job={job_s:g}s: {row['trials_per_min']:.1f}/min of "
                        f"{row['ideal_per_min']:.1f} ({100 * row['efficiency']:.1f} %), ask p50 "
                        f"{row['latency']['ask']['median_ms']} ms, tell p50 {row['latency']['tell']['median_ms']} ms, "
                        f"load {row['load_avg_start']} -> {row['load_avg_end']}",
                        flush=True,
                    )
    finally:
        if pg is not None:
            pg.stop()
    import_s = None if args.quick else round(fresh_import_s(), 2)
    print_table(
        [
            "backend",
            "W",
            "job s",
            "trials/min",
            "ideal",
            "% ideal",
            "ask p50/p95 ms",
            "tell p50/p95 ms",
            "look p50 ms",
            "job/ask/tell/look/rest %",
            "heartbeat stmt/s",
            "stmt/s",
            "start-up s",
            "load",
        ],
        [
            [
                r["backend"],
                r["workers"],
                f"{r['job_s']:g}",
                f"{r['trials_per_min']:.1f}",
                f"{r['ideal_per_min']:.0f}",
                f"{100 * r['efficiency']:.1f}",
                f"{r['latency']['ask']['median_ms']}/{r['latency']['ask']['p95_ms']}",
                f"{r['latency']['tell']['median_ms']}/{r['latency']['tell']['p95_ms']}",
                r["latency"]["look"]["median_ms"],
                "/".join(f"{r['time_pct'][k]:.1f}" for k in ("job", "ask", "tell", "look", "rest")),
                r["heartbeat_statements_per_s"],
                r["statements_per_s"],
                r["startup_s"]["to_all_in_job"],
                r["load_avg_start"][0],
            ]
            for r in rows
        ],
    )
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {"machine": info, "results": rows, "fresh_import_s": import_s, "skipped": skipped, "params": PARAMS}
    write_json(args, NAME, result)
    target = [
        r for r in rows if r["backend"] == "postgres" and r["workers"] == max(workers) and r["job_s"] == max(job_times)
    ]
    best = target[0] if target else rows[-1]
    print(
        f"ratio measured/ideal throughput, {best['backend']} W={best['workers']} job={best['job_s']:g}s: "
        f"{best['efficiency']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
