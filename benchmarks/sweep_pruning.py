"""Sweep pruning and sweep workers: what the lightning_reg Optuna sweeper saves, and how it scales.

Part 1, pruning: the digits TPE search (``hparams_search=digits_optuna``: 20 trials of up to 30 epochs, the
preset's seeds) with the preset's pruner (``top_quarter``: Optuna's percentile pruner, best 25%, 2 start-up
trials), with Optuna's median pruner (its defaults: 5 start-up trials, no warm-up) and with
``hydra/sweeper/lightning_reg_pruner=none``. Launches rotate through the three forms in each repeat. For each launch: total
epochs trained over all trials (from every trial's ``metrics.json``), wall time, and the best validation value. The unpruned search's seed
noise comes from its confirmation step: its best trial re-run with seeds 1, 2, 3 (``hydra.sweeper.confirm``),
whose sample std is the yardstick for "the pruned search found as good a configuration".

Part 2, workers: the digits random search (same cost distribution for every trial) with one worker against
two workers on one shared study (two processes of the same command, ``torch_threads=1`` and
``OMP_NUM_THREADS=1`` each, no pruner), in alternating order; trials per minute of wall time.

Part 3, against a plain Optuna script (``plain``): the same digits TPE search (space, seed, 20 trials, the
``top_quarter`` pruner) as benchmarks/plain_optuna_digits.py, ``optuna.create_study`` + ``study.optimize`` with
optuna-integration's ``PyTorchLightningPruningCallback``, training the same model and data in its own process, in
memory and without checkpoints (``plain``) and with an SQLite study and the best and last checkpoints of each trial
(``plain_durable``: what our sweep keeps); against our sweep (``hparams_search=digits_optuna``). All with the same torch threads (``--threads``), in
alternating order (``--plain-repeats``). Each launch's wall time is split, from the trials' start and end times,
``metrics.json``'s ``fit_seconds`` and the jobs' ``train.log`` time stamps, into: start-up (to the first trial),
``trainer.fit``, each trial's time outside fit (ours: the job's Hydra composition and run directory before its
log starts, building and ``metrics.json`` within it, the tell after it), the gaps between trials (the worker's
look and ask), and what follows the last trial (ours: the report, ``study.json``, ``optimization_results.yaml``).

Part 4, torch threads under contention (``threads``): our digits_optuna search with torch's default threads
(``torch_threads=null``, ``OMP_NUM_THREADS`` unset) against ``torch_threads=1``, with two CPU-bound processes
(pure-Python busy loops) running alongside, alternating; and once each with no extra process.

Every launch is a fresh process, timed from start to exit; the load average is recorded with each.

    python -m benchmarks.sweep_pruning [--quick] [--parts pruning,workers,plain,threads] [--repeats 2]
        [--worker-trials 24] [--plain-repeats 3] [--threads-repeats 2]
"""

from __future__ import annotations

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

NAME = "sweep_pruning"


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    for key in ("LIGHTNING_REG_TRIAL", "LOCAL_RANK", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _cmd(sweep: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lightning_reg.train",
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={sweep.parent / 'outputs'}",
        "hydra.callbacks.report.plots=false",
    ]


def _study(sweep: Path, name: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("lightning_reg:status") != "surplus"]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    epochs = 0
    timing = []
    for t in trials:
        path = sweep / str(t.number) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        epochs += int(metrics.get("epochs_completed") or 0)
        log_times = _log_span(sweep / str(t.number) / "train.log")
        timing.append(
            {
                "number": t.number,
                "start": t.datetime_start.timestamp() if t.datetime_start else None,
                "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "fit_s": metrics.get("fit_seconds"),
                "log_first": log_times[0],
                "log_last": log_times[1],
            }
        )
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    confirm = study.user_attrs.get("lightning_reg:confirm") or []
    return {
        "states": states,
        "epochs": epochs,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else None,
        "confirm": confirm,
        "timing": timing,
    }


def _log_span(path: Path) -> tuple[float | None, float | None]:
    """Epoch seconds of the first and last time-stamped lines of a job's ``train.log``."""
    import datetime as dt

    stamps = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("[") and len(line) > 24:
                try:
                    stamps.append(dt.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp())
                except ValueError:
                    continue
    return (stamps[0], stamps[-1]) if stamps else (None, None)


def phases(started: float, ended: float, timing: list[dict[str, Any]]) -> dict[str, float]:
    """Split one launch's wall time (see the module docstring, part 3)."""
    runs = sorted((t for t in timing if t["start"] and t["complete"]), key=lambda t: t["start"])
    fit = sum(float(t.get("fit_s") or 0.0) for t in runs)
    in_trials = sum(t["complete"] - t["start"] for t in runs)
    out = {
        "startup_s": runs[0]["start"] - started,
        "fit_s": fit,
        "trial_outside_fit_s": in_trials - fit,
        "between_trials_s": sum(max(0.0, b["start"] - a["complete"]) for a, b in zip(runs, runs[1:])),
        "after_last_s": ended - max(t["complete"] for t in runs),
    }
    logged = [t for t in runs if t.get("log_first") and t.get("log_last")]
    if logged:  # ours: the job's own log splits its time outside fit
        out["job_before_log_s"] = sum(max(0.0, t["log_first"] - t["start"]) for t in logged)
        out["job_log_outside_fit_s"] = sum(t["log_last"] - t["log_first"] - float(t["fit_s"] or 0) for t in logged)
        out["job_after_log_s"] = sum(max(0.0, t["complete"] - t["log_last"]) for t in logged)
    return {k: round(v, 2) for k, v in out.items()}


PRUNERS = ("top_quarter", "median", "none")


def run_search(
    pruner: str, root: Path, repeat: int, overrides: list[str], threads: int | None, tag: str = ""
) -> dict[str, Any]:
    sweep = root / f"{pruner}_{repeat}{tag}"
    args = [
        "hparams_search=digits_optuna",
        f"torch_threads={'null' if threads is None else threads}",
        f"hydra/sweeper/lightning_reg_pruner={pruner}",
        *overrides,
    ]
    if pruner == "none":
        args += ["hydra.sweeper.confirm.top_k=1", "hydra.sweeper.confirm.seeds=[1,2,3]"]
    root.mkdir(parents=True, exist_ok=True)
    t0, started, cpu0 = time.perf_counter(), time.time(), _children_cpu()
    proc = subprocess.run(_cmd(sweep, args), capture_output=True, text=True, env=_env(threads), cwd=root)
    wall, ended, cpu = time.perf_counter() - t0, time.time(), _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"search failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    out = _study(sweep, "digits_optuna")
    out.update(wall_s=wall, cpu_s=round(cpu, 2), pruner=pruner, load_avg=[round(v, 2) for v in os.getloadavg()])
    out["phases"] = phases(started, ended, out.pop("timing"))
    return out


def run_plain(root: Path, repeat: int, threads: int | None, quick: bool, durable: bool = False) -> dict[str, Any]:
    """benchmarks/plain_optuna_digits.py in a fresh process (part 3); ``durable``: with its ``--durable``."""
    out_json = root / f"plain{'_durable' if durable else ''}_{repeat}.json"
    cmd = [sys.executable, "-m", "benchmarks.plain_optuna_digits", "--out", str(out_json)]
    cmd += ["--durable"] if durable else []
    cmd += ["--n-trials", "3", "--max-epochs", "2"] if quick else []
    cmd += [] if threads is None else ["--threads", str(threads)]
    t0, started, cpu0 = time.perf_counter(), time.time(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=REPO)
    wall, ended, cpu = time.perf_counter() - t0, time.time(), _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"plain script failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    data = json.loads(out_json.read_text())
    states: dict[str, int] = {}
    for t in data["trials"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    return {
        "wall_s": wall,
        "cpu_s": round(cpu, 2),
        "epochs": sum(int(t.get("epochs") or 0) for t in data["trials"]),
        "best_value": data["best_value"],
        "best_params": data["best_params"],
        "states": states,
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "phases": phases(started, ended, data["trials"]),
    }


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (a launch's own CPU time: less sensitive than
    wall time to other work on the machine)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in rows]
    keys = sorted({k for r in rows for k in r["phases"]})
    return {
        "launches": len(rows),
        "wall_median_s": round(statistics.median(walls), 2),
        "cpu_median_s": round(statistics.median(r.get("cpu_s", 0.0) for r in rows), 2),
        "wall_min_s": round(min(walls), 2),
        "wall_max_s": round(max(walls), 2),
        "epochs": [r["epochs"] for r in rows],
        "best_values": [r["best_value"] for r in rows],
        "phases_median_s": {k: round(statistics.median(r["phases"].get(k, 0.0) for r in rows), 2) for k in keys},
    }


def compare_plain(root: Path, repeats: int, threads: int | None, quick: bool) -> dict[str, Any]:
    """Part 3: our sweep against the plain Optuna script, in memory and ``--durable``, in turn (the order reversed
    every other repeat)."""
    over = ["hydra.sweeper.n_trials=3", "trainer.max_epochs=2"] if quick else []
    cases = ("plain", "plain_durable", "ours")
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in cases}
    for r in range(repeats):
        for case in cases if r % 2 == 0 else cases[::-1]:
            if case.startswith("plain"):
                res = run_plain(root, r, threads, quick, durable=case == "plain_durable")
            else:
                res = run_search("top_quarter", root / "vs_plain", r, over, threads)
            runs[case].append(res)
            print(
                f"vs plain {r}: {case}: {res['wall_s']:.1f} s, {res['epochs']} epochs, best {res['best_value']:.4f}, "
                f"{res['states']}, phases {res['phases']}, load {res['load_avg']}",
                flush=True,
            )
    summary = {case: _summary(rows) for case, rows in runs.items()}
    ratio = summary["ours"]["wall_median_s"] / summary["plain"]["wall_median_s"]
    durable = summary["ours"]["wall_median_s"] / summary["plain_durable"]["wall_median_s"]
    return {
        "threads": threads,
        "runs": runs,
        "summary": summary,
        "wall_ratio_ours_to_plain": round(ratio, 4),
        "wall_ratio_ours_to_plain_durable": round(durable, 4),
    }


def compare_threads(root: Path, repeats: int, quick: bool, extra: list[str] | None = None) -> dict[str, Any]:
    """Part 4: torch's default threads against torch_threads=1, with two busy processes alongside, and without."""
    over = ["hydra.sweeper.n_trials=3", "trainer.max_epochs=2"] if quick else list(extra or [])
    rows: list[dict[str, Any]] = []
    plan = [
        (busy, threads) for r in range(repeats) for threads in ((None, 1) if r % 2 == 0 else (1, None)) for busy in (2,)
    ]
    plan += [(0, None), (0, 1)] if repeats > 0 else []
    for i, (busy, threads) in enumerate(plan):
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            res = run_search("top_quarter", root / "threads", i, over, threads, tag=f"_t{threads}_b{busy}")
        finally:
            for b in burners:
                b.kill()
                b.wait()
        res.update(busy=busy, threads="default" if threads is None else threads)
        rows.append(res)
        print(
            f"threads {res['threads']}, {busy} busy processes: {res['wall_s']:.1f} s, {res['epochs']} epochs, best "
            f"{res['best_value']:.4f}, load {res['load_avg']}",
            flush=True,
        )
    table = {}
    for busy in (2, 0):
        for threads in ("default", 1):
            walls = [r["wall_s"] for r in rows if r["busy"] == busy and r["threads"] == threads]
            if walls:
                table[f"busy{busy}_threads_{threads}"] = {
                    "launches": len(walls),
                    "wall_median_s": round(statistics.median(walls), 2),
                    "wall_min_s": round(min(walls), 2),
                    "wall_max_s": round(max(walls), 2),
                }
    return {"runs": rows, "summary": table}


def run_workers(n: int, root: Path, repeat: int, overrides: list[str]) -> dict[str, Any]:
    sweep = root / f"workers{n}_{repeat}"
    args = ["hparams_search=digits_random", "hydra/sweeper/lightning_reg_pruner=none", "torch_threads=1", *overrides]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            _cmd(sweep, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(1), cwd=root
        )
        for _ in range(n)
    ]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({p.returncode}):\n{out[-4000:]}")
    study = _study(sweep, "digits_random")
    finished = study["states"].get("complete", 0) + study["states"].get("pruned", 0)
    return {
        "workers": n,
        "wall_s": wall,
        "finished": finished,
        "trials_per_min": 60.0 * finished / wall,
        "load_avg": [round(v, 2) for v in os.getloadavg()],
    }


def _pruning_summary(searches: list[dict[str, Any]], workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Parts 1 and 2: the pruners against no pruning, and two workers against one (tables printed)."""
    out: dict[str, Any] = {}
    if searches:
        by = {p: [s for s in searches if s["pruner"] == p] for p in PRUNERS}
        base_epochs = statistics.median(u["epochs"] for u in by["none"])
        base_wall = statistics.median(u["wall_s"] for u in by["none"])
        base_best = statistics.median(u["best_value"] for u in by["none"])
        noise = [
            c["summary"]["std"] for u in by["none"] for c in u["confirm"] if c.get("summary", {}).get("std") is not None
        ]
        sigma = statistics.median(noise) if noise else None
        pruners: dict[str, dict[str, Any]] = {}
        for p in PRUNERS[:2]:
            pruners[p] = {
                "epochs_ratio": statistics.median(r["epochs"] for r in by[p]) / base_epochs,
                "wall_ratio": statistics.median(r["wall_s"] for r in by[p]) / base_wall,
                "best_gap": base_best - statistics.median(r["best_value"] for r in by[p]),
            }
        print()
        print_table(
            [
                "pruner",
                "launches",
                "epochs (median)",
                "x unpruned",
                "wall s (median)",
                "spread",
                "best val/acc",
                "states",
            ],
            [
                [
                    p,
                    len(rows),
                    statistics.median(r["epochs"] for r in rows),
                    f"{statistics.median(r['epochs'] for r in rows) / base_epochs:.3f}",
                    f"{statistics.median(r['wall_s'] for r in rows):.1f}",
                    f"{min(r['wall_s'] for r in rows):.1f}–{max(r['wall_s'] for r in rows):.1f}",
                    f"{statistics.median(r['best_value'] for r in rows):.4f}",
                    rows[0]["states"],
                ]
                for p, rows in by.items()
            ],
        )
        out.update(
            searches=searches,
            pruners=pruners,
            epochs_ratio=pruners["top_quarter"]["epochs_ratio"],
            wall_ratio=pruners["top_quarter"]["wall_ratio"],
            best_gap=pruners["top_quarter"]["best_gap"],
            seed_std_of_unpruned_best=sigma,
        )
    if workers:
        tpm = {n: statistics.median(w["trials_per_min"] for w in workers if w["workers"] == n) for n in (1, 2)}
        print()
        print_table(
            ["workers", "launches", "trials/min (median)", "spread", "wall s (median)"],
            [
                [
                    n,
                    sum(w["workers"] == n for w in workers),
                    f"{tpm[n]:.2f}",
                    f"{min(w['trials_per_min'] for w in workers if w['workers'] == n):.2f}–"
                    f"{max(w['trials_per_min'] for w in workers if w['workers'] == n):.2f}",
                    f"{statistics.median(w['wall_s'] for w in workers if w['workers'] == n):.1f}",
                ]
                for n in (1, 2)
            ],
        )
        out.update(workers=workers, trials_per_min=tpm, workers_speedup=tpm[2] / tpm[1])
    return out


def _print_plain(plain: dict[str, Any]) -> None:
    rows = []
    for case in ("plain", "plain_durable", "ours"):
        s = plain["summary"][case]
        ph = s["phases_median_s"]
        rows.append(
            [
                case,
                s["launches"],
                f"{s['wall_median_s']:.1f}",
                f"{s['wall_min_s']:.1f}–{s['wall_max_s']:.1f}",
                f"{s['cpu_median_s']:.1f}",
                s["epochs"],
                " ".join(f"{v:.4f}" for v in s["best_values"]),
                *(f"{ph.get(k, 0.0):.1f}" for k in ("startup_s", "fit_s", "trial_outside_fit_s", "between_trials_s")),
                f"{ph.get('after_last_s', 0.0):.1f}",
            ]
        )
    print()
    print_table(
        [
            "",
            "launches",
            "wall s (median)",
            "spread",
            "CPU s (median)",
            "epochs",
            "best val/acc",
            "start-up s",
            "fit s",
            "trial outside fit s",
            "between trials s",
            "after last s",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="pruning,workers,plain,threads", help="which parts to run (comma list)")
    parser.add_argument("--repeats", type=int, default=2, help="launches per case, alternating (parts 1, 2)")
    parser.add_argument("--worker-trials", type=int, default=24, help="trials of each worker-scaling study")
    parser.add_argument("--plain-repeats", type=int, default=3, help="launches per side in part 3")
    parser.add_argument("--threads-repeats", type=int, default=2, help="contended launches per setting in part 4")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every launch (after --)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in ("pruning", "workers", "plain", "threads")]
    if unknown:
        parser.error(f"--parts takes pruning, workers, plain, threads; got {unknown}")
    search_over = ["hydra.sweeper.n_trials=6", "trainer.max_epochs=4"] if args.quick else []
    worker_over = [f"hydra.sweeper.n_trials={4 if args.quick else args.worker_trials}"]
    worker_over += ["trainer.max_epochs=3"] if args.quick else ["trainer.max_epochs=30"]
    search_over += args.overrides
    worker_over += args.overrides
    repeats = 1 if args.quick else args.repeats
    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}", flush=True)
    searches: list[dict[str, Any]] = []
    workers: list[dict[str, Any]] = []
    result: dict[str, Any] = {"machine": info, "parts": parts, "search_overrides": search_over}
    with tempfile.TemporaryDirectory(prefix="lightning_reg_pruning_") as tmp:
        root = Path(tmp)
        if "pruning" in parts:
            for r in range(repeats):
                for pruner in PRUNERS[r % 3 :] + PRUNERS[: r % 3]:
                    res = run_search(pruner, root, r, search_over, args.threads)
                    searches.append(res)
                    print(
                        f"search {len(searches)}: pruner {pruner}: {res['epochs']} epochs, {res['wall_s']:.1f} s, "
                        f"best {res['best_value']:.4f}, {res['states']}, load {res['load_avg']}",
                        flush=True,
                    )
        if "workers" in parts:
            result["worker_overrides"] = worker_over
            for r in range(repeats):
                for n in (1, 2) if r % 2 == 0 else (2, 1):
                    res = run_workers(n, root, r, worker_over)
                    workers.append(res)
                    print(
                        f"workers {n}: {res['finished']} trials in {res['wall_s']:.1f} s = "
                        f"{res['trials_per_min']:.2f} trials/min, load {res['load_avg']}",
                        flush=True,
                    )
        if "plain" in parts:
            result["plain"] = compare_plain(root, 1 if args.quick else args.plain_repeats, args.threads, args.quick)
        if "threads" in parts:
            result["threads"] = compare_threads(
                root, 1 if args.quick else args.threads_repeats, args.quick, args.overrides
            )
    result.update(_pruning_summary(searches, workers))
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    summary = []
    if "pruners" in result:
        median = result["pruners"]["median"]
        sigma = result["seed_std_of_unpruned_best"]
        gap = f"{result['best_gap']:+.4f}" + (f" ({result['best_gap'] / sigma:+.2f} seed std)" if sigma else "")
        print(
            f"median pruner / unpruned: epochs {median['epochs_ratio']:.3f}, wall {median['wall_ratio']:.3f}, best "
            f"gap {median['best_gap']:+.4f}"
        )
        summary.append(
            f"top_quarter/unpruned epochs {result['epochs_ratio']:.3f}, wall {result['wall_ratio']:.3f}, gap {gap}"
        )
    if "workers_speedup" in result:
        summary.append(f"2 workers/1 trials per minute {result['workers_speedup']:.2f}x")
    if "plain" in result:
        _print_plain(result["plain"])
        summary.append(f"our sweep/plain Optuna wall {result['plain']['wall_ratio_ours_to_plain']:.3f}")
        summary.append(f"our sweep/durable plain Optuna wall {result['plain']['wall_ratio_ours_to_plain_durable']:.3f}")
    if "threads" in result:
        t = result["threads"]["summary"]
        print()
        print_table(
            ["case", "launches", "wall s (median)", "spread"],
            [
                [k, v["launches"], f"{v['wall_median_s']:.1f}", f"{v['wall_min_s']:.1f}–{v['wall_max_s']:.1f}"]
                for k, v in t.items()
            ],
        )
        d, one = t.get("busy2_threads_default"), t.get("busy2_threads_1")
        if d and one:
            summary.append(f"contended default/1 thread wall {d['wall_median_s'] / one['wall_median_s']:.2f}")
    write_json(args, NAME, result)
    print("ratio " + "; ".join(summary))
    return result


if __name__ == "__main__":
    main()
