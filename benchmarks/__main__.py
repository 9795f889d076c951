"""Run every benchmark, each in its own process, then print all their ratios.

    python -m benchmarks                    # the full suite (about 11 minutes on 2 CPU cores)
    python -m benchmarks --quick            # smoke run: about a minute
    python -m benchmarks --only floor callback_overhead --device cuda --data-dir /path/to/data

Each benchmark measures its case against its baseline inside its own process and writes
``<out-dir>/<name>.json`` (``<name>_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks import BENCHMARKS
from benchmarks.common import REPO, base_parser


def summary_line(name: str, data: dict) -> str:
    if name == "callback_overhead":
        return (
            f"callbacks / bare step time {data['ratio_step_median']:.3f} (median), {data['ratio_step_fastest']:.3f} "
            f"(fastest); time in the callbacks' hooks {data['hook_pct_of_bare_step']:.1f}% of a bare step"
        )
    if name == "cifar_cnn":
        return (
            "epoch time / hand-written loop: "
            + ", ".join(
                f"{form} {data['ratios'][form]:.3f} ({data['images_per_s'][form]:,.0f} images/s)"
                for form in data["ratios"]
                if form != "hand"
            )
            + f"; hand {data['images_per_s']['hand']:,.0f} images/s"
        )
    if name == "floor":
        return "epoch time / hand-written loop: " + ", ".join(
            f"{form} {data['ratios'][form]:.3f} (fastest {data['ratios_fastest'][form]:.3f})"
            for form in data["ratios"]
            if form != "hand"
        )
    if name == "augment_throughput":
        return "device / cpu samples per second: " + ", ".join(
            f"{r['preset']} {r['shape'].split()[0]} " + (f"{r['ratio']:.1f}x" if r["ratio"] else "n/a (cpu only)")
            for r in data["results"]
        )
    if name == "sweep_parallelism":
        return (
            f"joblib / basic wall time {data['ratio_joblib_to_basic']:.3f} "
            f"(speed-up {1 / data['ratio_joblib_to_basic']:.2f}x, {data['runs_per_launch']} runs per launch)"
        )
    if name == "sweep_pruning":
        return (
            f"pruned / unpruned epochs {data['epochs_ratio']:.3f}, wall {data['wall_ratio']:.3f}, best value gap "
            f"{data['best_gap']:+.4f}; 2 / 1 workers trials per minute {data['workers_speedup']:.2f}x"
        )
    if name == "real_models":
        return "; ".join(
            f"{model} x bare (median): "
            + ", ".join(
                f"{case} {v['ratio_median']:.3f}"
                for case, v in m.items()
                if isinstance(v, dict) and case != "bare" and "ratio_median" in v
            )
            for model, m in data["models"].items()
        )
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.json_out is not None:
        parser.error("--json-out names one file; use --out-dir with several benchmarks")
    common = [
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--data-dir",
        str(args.data_dir),
        "--out-dir",
        str(args.out_dir),
    ] + (["--quick"] if args.quick else [])
    failed, paths = [], {}
    for name in args.only:
        print(f"\n=== benchmarks.{name} {' '.join(common)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *common], cwd=REPO)
        print(f"=== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
        paths[name] = args.out_dir / f"{name}{'_quick' if args.quick else ''}.json"
    print("\nratios:")
    for name, path in paths.items():
        if name in failed or not path.exists():
            print(f"  {name}: FAILED")
            continue
        print(f"  {name}: {summary_line(name, json.loads(path.read_text()))}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
