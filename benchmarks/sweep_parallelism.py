"""Sweep parallelism: the main job's multirun with the joblib launcher vs Hydra's basic (sequential) launcher.

The main job is ``python -m lightning_reg.train experiment=regularizers_digits``: 6 variants x 3 seeds = 18 runs
of the 128-64 MLP on 150 digits images, 40 epochs each, then the comparison report. Its experiment config
picks the joblib launcher with ``n_jobs: 2``; the baseline adds ``hydra/launcher=basic``, which runs the same
18 jobs one after the other in the launching process. Each launch is a fresh ``python -m lightning_reg.train``
child process, timed from start to exit (wall time, so Python and torch start-up, the report and the plots
count, as for a user). Launches alternate (joblib, basic, basic, joblib, ...) so that a slow phase of a shared
machine hits both. Every launch must finish with one completed ``metrics.json`` per run, or the benchmark fails.

Thread count matters here. The experiment sets ``torch_threads: ${lightning_reg_threads_per_job:}``: under the
joblib launcher each job gets ``cores // n_jobs`` torch threads (1 on 2 cores); under the basic launcher the
resolver gives None, torch's default. ``--omp-threads N`` sets ``OMP_NUM_THREADS`` for both launchers.

Start-up: before the launches, the import of ``lightning_reg.app.train`` in a fresh process is timed (median of 3),
the fixed cost each process that runs jobs pays (the basic launcher once, each joblib worker once), and that of
``lightning_reg.train``, the entry point, which is all the launching process imports itself. Each launch's wall
time is split, from its runs' ``train.log`` time stamps, into the time to the first run's start, the runs, and
what follows them (the report).

``--quick``: 2 variants x 1 seed, 1 epoch, no test run, no plots (a smoke test of the same command line).

    python -m benchmarks.sweep_parallelism [--quick] [--repeats 2] [--device cuda] [-- extra Hydra overrides]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, base_parser, describe, machine_info, print_table, write_json

NAME = "sweep_parallelism"
#: The launcher override per label: the experiment's own preset (``joblib_2``, two jobs) and Hydra's basic one.
LAUNCHER_CONFIG = {"joblib": "joblib_2", "basic": "basic"}
LAUNCHERS = tuple(LAUNCHER_CONFIG)
PHASES = ("to_first_run_s", "runs_s", "after_runs_s")
QUICK_OVERRIDES = (
    "variant/regularizers_digits=baseline,l2",
    "seed=1",
    "trainer.max_epochs=1",
    "test=false",
    "hydra.callbacks.report.plots=false",
)


def _log_time(line: str) -> float:
    """The epoch seconds of a ``train.log`` line's ``[YYYY-mm-dd HH:MM:SS,mmm]`` prefix (local time)."""
    return dt.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def phases(log_dir: Path, started: float, ended: float) -> dict[str, float]:
    """Where a launch's wall time went, from its runs' ``train.log`` time stamps.

    ``to_first_run_s``: from the command's start to the first run's first log line (Python start-up, Hydra's
    composition of every job's config, and, under joblib, the workers' start and their import of Lightning; the
    basic launcher imports it during its first run instead). ``runs_s``: from there to the last run's last line.
    ``after_runs_s``: the rest (the comparison report, its plots, exit).
    """
    spans = []
    for log in log_dir.rglob("train.log"):
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith("[") and len(ln) > 24]
        if lines:
            spans.append((_log_time(lines[0]), _log_time(lines[-1])))
    if not spans:
        return {}
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    return {"to_first_run_s": first - started, "runs_s": last - first, "after_runs_s": ended - last}


def median_phases(launches: list[dict[str, Any]], launcher: str) -> dict[str, float]:
    """Each phase's median over one launcher's launches (those whose runs left a ``train.log``)."""
    rows = [x["phases"] for x in launches if x["launcher"] == launcher and x["phases"]]
    return {k: statistics.median(r[k] for r in rows) for k in PHASES} if rows else {}


def launch(launcher: str, log_dir: Path, overrides: list[str], env: dict[str, str]) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "--multirun",
        "experiment=regularizers_digits",
        f"hydra/launcher={LAUNCHER_CONFIG[launcher]}",
        f"paths.log_dir={log_dir}",
        *overrides,
    ]
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.perf_counter() - t0
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    metrics = sorted(log_dir.rglob("metrics.json"))
    statuses = [json.loads(p.read_text()).get("status") for p in metrics]
    return {
        "wall_s": wall,
        "runs": len(metrics),
        "completed": statuses.count("completed"),
        "phases": phases(log_dir, started, ended),
        "command": " ".join(["python", *cmd[1:]]),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="launches per launcher, alternating")
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=None,
        help="set OMP_NUM_THREADS for both launches (default: unset, torch's default, as users run it)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both launchers (after --)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    overrides = list(QUICK_OVERRIDES) if args.quick else []
    if args.device.startswith("cuda"):
        overrides.append("trainer=gpu")
    overrides += args.overrides
    repeats = 1 if args.quick else args.repeats
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("OMP_NUM_THREADS", None)
    if args.omp_threads is not None:
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    info = machine_info(args.device)
    info["torch_threads"] = (
        f"OMP_NUM_THREADS={args.omp_threads} in every launch"
        if args.omp_threads is not None
        else "the experiment's: cores // n_jobs under joblib, torch's default under basic"
    )
    print(f"{NAME}: {describe(info)}")
    print(
        f"python -m lightning_reg.train experiment=regularizers_digits hydra/launcher=<joblib|basic> "
        f"{' '.join(overrides)}; {repeats} alternating launch(es) per launcher",
        flush=True,
    )
    # The job's code (Lightning included), which every process that runs jobs imports once, and the entry point
    # alone, which is all that the launching process imports under joblib. Interleaved, in fresh processes.
    imports: list[float] = []
    entry_imports: list[float] = []
    for _ in range(1 if args.quick else 3):
        for module, times in (("lightning_reg.app.train", imports), ("lightning_reg.train", entry_imports)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import {module}"], env=env, cwd=REPO, check=True)
            times.append(time.perf_counter() - t0)
    import_s = statistics.median(imports)
    entry_import_s = statistics.median(entry_imports)
    print(
        f"start-up, in a fresh process (median of {len(imports)}): `import lightning_reg.app.train` {import_s:.2f} s, "
        f"`import lightning_reg.train` (the entry point) {entry_import_s:.2f} s, "
        f"load {[round(v, 2) for v in os.getloadavg()]}",
        flush=True,
    )
    walls: dict[str, list[float]] = {lc: [] for lc in LAUNCHERS}
    launches: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="lightning_reg_sweep_") as tmp:
        for r in range(repeats):
            for launcher in LAUNCHERS if r % 2 == 0 else LAUNCHERS[::-1]:
                res = launch(launcher, Path(tmp) / f"{launcher}_{r}", overrides, env)
                if res["runs"] == 0 or res["completed"] != res["runs"]:
                    raise RuntimeError(f"{launcher}: {res['completed']} of {res['runs']} runs completed")
                res.update(launcher=launcher, repeat=r, load_avg=[round(v, 2) for v in os.getloadavg()])
                launches.append(res)
                walls[launcher].append(res["wall_s"])
                ph = res["phases"]
                print(
                    f"launch {len(launches)}: {launcher} {res['wall_s']:.1f} s (to the first run "
                    f"{ph.get('to_first_run_s', float('nan')):.1f} s, runs {ph.get('runs_s', float('nan')):.1f} s, "
                    f"after {ph.get('after_runs_s', float('nan')):.1f} s), {res['completed']} runs completed, "
                    f"load {res['load_avg']}",
                    flush=True,
                )
    runs = launches[0]["runs"]
    ratio_median = statistics.median(walls["joblib"]) / statistics.median(walls["basic"])
    ratio_fastest = min(walls["joblib"]) / min(walls["basic"])
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        ["launcher", "runs", "median wall s", "fastest wall s", "x basic (median)", "speed-up vs basic"],
        [
            [
                lc,
                runs,
                f"{statistics.median(walls[lc]):.1f}",
                f"{min(walls[lc]):.1f}",
                f"{statistics.median(walls[lc]) / statistics.median(walls['basic']):.3f}",
                f"{statistics.median(walls['basic']) / statistics.median(walls[lc]):.2f}x",
            ]
            for lc in LAUNCHERS
        ],
    )
    result = {
        "machine": info,
        "overrides": overrides,
        "runs_per_launch": runs,
        "launches": launches,
        "import_s": import_s,
        "import_runs_s": imports,
        "entry_import_s": entry_import_s,
        "entry_import_runs_s": entry_imports,
        "median_wall_s": {lc: statistics.median(v) for lc, v in walls.items()},
        "median_phases_s": {lc: median_phases(launches, lc) for lc in LAUNCHERS},
        "ratio_joblib_to_basic": ratio_median,
        "ratio_joblib_to_basic_fastest": ratio_fastest,
    }
    write_json(args, NAME, result)
    print(
        f"ratio joblib/basic wall time: {ratio_median:.3f} (median), {ratio_fastest:.3f} (fastest); "
        f"speed-up {1 / ratio_median:.2f}x"
    )
    return result


if __name__ == "__main__":
    main()
