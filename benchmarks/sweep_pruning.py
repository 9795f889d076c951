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

Every launch is a fresh ``python -m lightning_reg.train -m`` process, timed from start to exit.

    python -m benchmarks.sweep_pruning [--quick] [--repeats 2] [--worker-trials 24]
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


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
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
    for t in trials:
        path = sweep / str(t.number) / "metrics.json"
        if path.is_file():
            epochs += int(json.loads(path.read_text()).get("epochs_completed") or 0)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    confirm = study.user_attrs.get("lightning_reg:confirm") or []
    return {
        "states": states,
        "epochs": epochs,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else None,
        "confirm": confirm,
    }


PRUNERS = ("top_quarter", "median", "none")


def run_search(pruner: str, root: Path, repeat: int, overrides: list[str], threads: int) -> dict[str, Any]:
    sweep = root / f"{pruner}_{repeat}"
    args = [
        "hparams_search=digits_optuna",
        f"torch_threads={threads}",
        f"hydra/sweeper/lightning_reg_pruner={pruner}",
        *overrides,
    ]
    if pruner == "none":
        args += ["hydra.sweeper.confirm.top_k=1", "hydra.sweeper.confirm.seeds=[1,2,3]"]
    t0 = time.perf_counter()
    proc = subprocess.run(_cmd(sweep, args), capture_output=True, text=True, env=_env(threads), cwd=root)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"search failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    out = _study(sweep, "digits_optuna")
    out.update(wall_s=wall, pruner=pruner, load_avg=[round(v, 2) for v in os.getloadavg()])
    return out


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="launches per case, alternating")
    parser.add_argument("--worker-trials", type=int, default=24, help="trials of each worker-scaling study")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every launch (after --)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
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
    with tempfile.TemporaryDirectory(prefix="lightning_reg_pruning_") as tmp:
        root = Path(tmp)
        for r in range(repeats):
            for pruner in PRUNERS[r % 3 :] + PRUNERS[: r % 3]:
                res = run_search(pruner, root, r, search_over, args.threads)
                searches.append(res)
                print(
                    f"search {len(searches)}: pruner {pruner}: {res['epochs']} epochs, {res['wall_s']:.1f} s, best "
                    f"{res['best_value']:.4f}, {res['states']}, load {res['load_avg']}",
                    flush=True,
                )
        for r in range(repeats):
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                res = run_workers(n, root, r, worker_over)
                workers.append(res)
                print(
                    f"workers {n}: {res['finished']} trials in {res['wall_s']:.1f} s = {res['trials_per_min']:.2f} "
                    f"trials/min, load {res['load_avg']}",
                    flush=True,
                )
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
    epochs_ratio, wall_ratio, best_gap = (pruners["top_quarter"][k] for k in ("epochs_ratio", "wall_ratio", "best_gap"))
    tpm = {n: statistics.median(w["trials_per_min"] for w in workers if w["workers"] == n) for n in (1, 2)}
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        ["pruner", "launches", "epochs (median)", "x unpruned", "wall s (median)", "spread", "best val/acc", "states"],
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
    result = {
        "machine": info,
        "search_overrides": search_over,
        "worker_overrides": worker_over,
        "searches": searches,
        "workers": workers,
        "pruners": pruners,
        "epochs_ratio": epochs_ratio,
        "wall_ratio": wall_ratio,
        "best_gap": best_gap,
        "seed_std_of_unpruned_best": sigma,
        "trials_per_min": tpm,
        "workers_speedup": tpm[2] / tpm[1],
    }
    write_json(args, NAME, result)
    gap = f"{best_gap:+.4f}" + (f" ({best_gap / sigma:+.2f} seed std, std {sigma:.4f})" if sigma else "")
    median = pruners["median"]
    print(
        f"median pruner / unpruned: epochs {median['epochs_ratio']:.3f}, wall {median['wall_ratio']:.3f}, best gap "
        f"{median['best_gap']:+.4f}"
    )
    print(
        f"top_quarter / unpruned: epochs {epochs_ratio:.3f}, wall {wall_ratio:.3f}; best value unpruned − pruned {gap}; "
        f"2 workers / 1 worker trials per minute {tpm[2] / tpm[1]:.2f}x"
    )
    return result


if __name__ == "__main__":
    main()
