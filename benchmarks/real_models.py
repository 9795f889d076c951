"""Callback overhead on real architectures: a timm ViT and a torchvision ResNet-18, bare Lightning vs all of our
callbacks, and SAM's cost, in the same process with interleaved repeats.

Models (random weights, built from their configs; CPU-sized, small inputs):

- ``vit``: ``timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, drop_path_rate=0.1)``
  (1.8 M parameters), AdamW (lr 1e-3), on 3x32x32 images;
- ``resnet18``: ``torchvision.models.resnet18(num_classes=10)`` (11.2 M parameters; its standard 7x7 stride-2
  stem and max-pool), SGD (lr 0.05, momentum 0.9), on 3x32x32 images.

Data: synthetic 3x32x32 images with 10 classes (class centres plus noise), batch 32, a ``DataLoader`` over a
``TensorDataset`` (no workers): the data path is the same in every case.

Cases per model, one fresh model per fit, rotated order per repeat:

- ``bare``: the model alone (the ViT keeps its DropPath modules at 0.1).
- ``callbacks``: ``WeightPenalty(l2=1e-4)`` (the default selection: kernels; norms, biases, ``pos_embed`` and
  ``cls_token`` left out), ``MaxNorm(3.0)`` (conv kernels per output channel, linear rows),
  ``EarlyStopping(monitor="val/loss", restore_best_weights=True)``, and for the ViT ``ScheduledDropout`` over its
  ``DropPath`` modules (linear 0.1 -> 0.2, depth-scaled, set every step).
- ``callbacks_sd`` (ResNet-18 only): ``callbacks`` plus ``StochasticDepth`` injected into the ``BasicBlock``s
  (linear 0.0 -> 0.1, depth-scaled). The ResNet has no drop-path of its own, so this case's model does more: a
  per-sample mask on every residual branch.
- ``sam``: the bare model with ``SAM(base=<the same optimizer>, rho=0.05)``: two forward/backward passes per
  step, so about 2x by nature.

Timed: the loop iteration (``on_train_batch_end`` to the next one, the first interval of each fit dropped), as
in ``callback_overhead``; per repeat each case's median step, and the median over repeats of the paired ratios
to ``bare`` with their min and max. The time inside the callbacks' own hooks is reported per callback (for the
case with every callback).

With ``--instructions`` (default on, off with ``--quick``), the same fits also run under ``valgrind
--tool=callgrind`` for ``--cg-steps`` steps per case: instructions per step, which do not move with the load.

    python -m benchmarks.real_models [--quick] [--models vit resnet18] [--repeats 7] [--steps 12]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.callback_overhead import CountSteps, StepTimer, time_hooks
from benchmarks.common import (
    REPO,
    base_parser,
    describe,
    machine_info,
    print_table,
    quiet_lightning,
    time_ops,
    write_json,
)
from lightning_reg import EarlyStopping, MaxNorm, ScheduledDropout, StochasticDepth, WeightPenalty
from lightning_reg.models.zoo import ImageClassifier, timm_model, torchvision_model
from lightning_reg.optim.sam import SAM

NAME = "real_models"
MODELS = ("vit", "resnet18")
CASES = ("bare", "callbacks", "sam")
# The ResNet has no drop-path of its own: StochasticDepth changes its model (a per-sample mask on every residual
# branch), so it is its own case there, and "callbacks" is WeightPenalty + MaxNorm + EarlyStopping.
EXTRA_CASES = {"resnet18": ("callbacks_sd",)}


def cases_of(model: str) -> tuple[str, ...]:
    return CASES[:2] + EXTRA_CASES.get(model, ()) + CASES[2:]


BATCH, SHAPE, CLASSES = 32, (3, 32, 32), 10


def images(n: int, seed: int) -> TensorDataset:
    centers = torch.randn(CLASSES, *SHAPE, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return TensorDataset(centers[y] + 0.5 * torch.randn(n, *SHAPE, generator=g), y)


def build(model: str, case: str) -> pl.LightningModule:
    if model == "vit":
        net: Any = functools.partial(
            timm_model, "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, drop_path_rate=0.1
        )
        base: Any = functools.partial(torch.optim.AdamW, lr=1e-3)
        base_cls, base_kw = torch.optim.AdamW, {"lr": 1e-3}
    else:
        net = functools.partial(torchvision_model, "resnet18")
        base = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)
        base_cls, base_kw = torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}
    optimizer = functools.partial(SAM, base=base_cls, rho=0.05, **base_kw) if case == "sam" else base
    return ImageClassifier(net, CLASSES, SHAPE, optimizer=optimizer)


def callbacks_for(model: str, case: str, total: int) -> list[pl.Callback]:
    if not case.startswith("callbacks"):
        return []
    common = [
        WeightPenalty(l2=1e-4),
        MaxNorm(max_norm=3.0),
        EarlyStopping(monitor="val/loss", patience=100, restore_best_weights=True),
    ]
    if model == "resnet18" and case == "callbacks":
        return common
    if model == "vit":
        depth: pl.Callback = ScheduledDropout(
            {"name": "linear", "start": 0.1, "end": 0.2, "end_at": total},
            modules=["DropPath"],
            depth_scale=True,
            interval="step",
            verbose=False,
        )
    else:
        depth = StochasticDepth({"name": "linear", "start": 0.0, "end": 0.1, "end_at": total}, verbose=False)
    return [*common, depth]


def make_run(model: str, case: str, args: Any, extra: list[pl.Callback] | None = None, hooks: dict | None = None):
    torch.manual_seed(0)
    module = build(model, case)
    callbacks = callbacks_for(model, case, args.steps * args.epochs)
    if hooks is not None:
        for cb in callbacks:
            time_hooks(cb, hooks)
    timer = StepTimer(torch.device("cpu"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        limit_train_batches=args.steps,
        limit_val_batches=args.val_batches,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, *(extra or []), timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train = DataLoader(images(BATCH * args.steps, seed=1), batch_size=BATCH, shuffle=True)
    val = DataLoader(images(BATCH * args.val_batches, seed=2), batch_size=BATCH)
    return trainer, module, train, val, timer


def run_case(model: str, case: str, args: Any) -> dict[str, Any]:
    hooks: dict[str, float] = {}
    trainer, module, train, val, timer = make_run(model, case, args, hooks=hooks)
    trainer.fit(module, train, val)
    return {
        "step_s": statistics.median(timer.steps),
        "fastest_s": min(timer.steps),
        "hooks_per_step_s": {k: v / trainer.global_step for k, v in hooks.items() if k.endswith("step")},
        "hooks_per_epoch_s": {k: v / trainer.current_epoch for k, v in hooks.items() if k.endswith("other")},
    }


def raw_math(model: str) -> dict[str, Any]:
    """The math WeightPenalty and MaxNorm perform per step on this model's own selections, alone in a hot loop
    (ms per call, median of 30 after 5 warm-up calls): the floor of any implementation of these regularizers."""
    from lightning_reg.core.penalties import PenaltySpec

    torch.manual_seed(0)
    module = build(model, "bare")
    penalized = [s.param for s in PenaltySpec(l2=1e-4).resolve(module)]
    grads = [torch.randn_like(p) for p in penalized]
    constrained = [(s.param, s.unit_dim) for s in PenaltySpec().resolve(module, owner="MaxNorm")]

    def renorm() -> None:
        for p, dim in constrained:
            p.renorm_(2, dim, 3.0)

    ops = {
        "WeightPenalty: foreach_add_(grads, params, alpha=2λ)": lambda: torch._foreach_add_(
            grads, penalized, alpha=2e-4
        ),
        "MaxNorm: renorm_ on every constrained kernel": renorm,
    }
    with torch.no_grad():
        math_ms = {name: t * 1e3 for name, t in time_ops(ops, warmup=5, calls=30).items()}
    return {
        "ops_ms": math_ms,
        "parameters_millions": sum(p.numel() for p in module.parameters()) / 1e6,
        "penalized_millions": sum(p.numel() for p in penalized) / 1e6,
    }


def callgrind_child(args: Any) -> None:
    k = args.cg_steps
    args.steps, args.epochs, args.val_batches = k + 1, 1, 1
    for model in args.models:
        for case in cases_of(model):
            counter = CountSteps(k, f"{model} {case}")
            trainer, module, train, val, _ = make_run(model, case, args, extra=[counter])
            trainer.fit(module, train, val)
    print("callgrind child done")


def instruction_counts(args: Any) -> dict[str, Any]:
    from benchmarks import instructions

    why = instructions.available()
    if why is not None:
        return {"skipped": why}
    with tempfile.TemporaryDirectory(prefix="callgrind_") as tmp:
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                *instructions.valgrind_command(Path(tmp)),
                sys.executable,
                "-m",
                "benchmarks.real_models",
                "--threads",
                "1",
                "--models",
                *args.models,
                "--cg-steps",
                str(args.cg_steps),
                "--callgrind-child",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path},
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or "callgrind child done" not in proc.stdout:
            return {"skipped": f"the callgrind run failed (rc {proc.returncode}): {proc.stderr[-1500:]}"}
        raw = instructions.read_counts(Path(tmp))
    per_step = {name.removesuffix(" gap"): sum(v) / args.cg_steps for name, v in raw.items()}
    ratios = {
        f"{m} {c} x bare": per_step[f"{m} {c}"] / per_step[f"{m} bare"]
        for m in args.models
        for c in cases_of(m)[1:]
        if f"{m} {c}" in per_step and f"{m} bare" in per_step
    }
    return {"per_step": per_step, "ratios": ratios, "steps": args.cg_steps, "wall_s": wall}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats of the cases")
    parser.add_argument("--steps", type=int, default=12, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (validation + EarlyStopping between)")
    parser.add_argument("--val-batches", type=int, default=2, help="validation batches per epoch")
    parser.add_argument("--instructions", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--cg-steps", type=int, default=2, help="training steps counted per case under callgrind")
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.device != "cpu":
        parser.error("--device: this benchmark runs on the CPU only (the models are sized for 2 CPU cores)")
    if args.instructions is None:
        args.instructions = not args.quick
    if args.quick:
        args.repeats, args.steps, args.epochs, args.val_batches = 1, 3, 1, 1
    torch.set_num_threads(args.threads)
    quiet_lightning()
    if args.callgrind_child:
        callgrind_child(args)
        return {}
    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(
        f"synthetic 3x32x32 images, batch {BATCH}; {args.repeats} repeats x {args.epochs} epochs x {args.steps} "
        f"steps (+{args.val_batches} val batches) per case, after 1 untimed warm-up fit per case"
    )
    results: dict[str, Any] = {}
    for model in args.models:
        cases = cases_of(model)
        per: dict[str, list[float]] = {c: [] for c in cases}
        fastest = {c: float("inf") for c in cases}
        hook_runs: list[dict[str, float]] = []
        hooked = cases[-2]  # the case with every callback (callbacks_sd for the ResNet)
        for case in cases:
            run_case(model, case, args)
        for r in range(args.repeats):
            order = list(cases[r % len(cases) :]) + list(cases[: r % len(cases)])
            this = {case: run_case(model, case, args) for case in order}
            for case, res in this.items():
                per[case].append(res["step_s"])
                fastest[case] = min(fastest[case], res["fastest_s"])
            hook_runs.append({**this[hooked]["hooks_per_step_s"], **this[hooked]["hooks_per_epoch_s"]})
            print(
                f"{model} repeat {r + 1}/{args.repeats}: "
                + ", ".join(f"{c} {this[c]['step_s'] * 1e3:.1f} ms/step" for c in cases),
                flush=True,
            )
        summary: dict[str, Any] = {}
        for case in cases:
            ratios = [v / b for v, b in zip(per[case], per["bare"])]
            summary[case] = {
                "median_step_ms": statistics.median(per[case]) * 1e3,
                "fastest_step_ms": fastest[case] * 1e3,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "ratio_fastest": fastest[case] / fastest["bare"],
                "per_repeat_ms": [v * 1e3 for v in per[case]],
            }
        hooks = {k: statistics.median(run.get(k, 0.0) for run in hook_runs) * 1e3 for k in hook_runs[0]}
        step_hooks = statistics.median(sum(v for k, v in run.items() if k.endswith("step")) for run in hook_runs)
        summary["hooks_case"] = hooked
        summary["hooks_ms"] = hooks  # "<Class> step": ms per step; "<Class> other": ms per epoch
        summary["hooks_pct_of_bare_step"] = 100 * step_hooks / statistics.median(per["bare"])
        summary["raw_math_ms"] = raw = raw_math(model)
        floor = sum(raw["ops_ms"].values())
        summary["raw_math_floor_x_bare"] = 1 + floor / summary["bare"]["median_step_ms"]
        results[model] = summary
        print()
        print_table(
            ["model", "case", "median step ms", "x bare (median)", "min", "max", "x bare (fastest)"],
            [
                [
                    model,
                    c,
                    f"{summary[c]['median_step_ms']:.1f}",
                    f"{summary[c]['ratio_median']:.3f}",
                    f"{summary[c]['ratio_min']:.3f}",
                    f"{summary[c]['ratio_max']:.3f}",
                    f"{summary[c]['ratio_fastest']:.3f}",
                ]
                for c in cases
            ],
        )
        print(
            f"{model} ({hooked}): time in the callbacks' hooks {step_hooks * 1e3:.2f} ms per step "
            f"({summary['hooks_pct_of_bare_step']:.1f}% of the median bare step); "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(hooks.items()) if v >= 0.005)
            + " (step: per step; other: per epoch)"
        )
        print(
            f"{model}: raw math alone, hot loop: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in raw["ops_ms"].items())
            + f", on {raw['penalized_millions']:.2f} M of {raw['parameters_millions']:.2f} M weights"
            + f"; (bare step + that math) / bare step = {summary['raw_math_floor_x_bare']:.3f}\n"
        )
    counts: dict[str, Any] = {"skipped": "--no-instructions"}
    if args.instructions:
        counts = instruction_counts(args)
        if "skipped" in counts:
            print(f"instruction counts skipped: {counts['skipped']}")
        else:
            print(f"instructions per step (callgrind, {counts['steps']} steps per case, {counts['wall_s']:.0f} s):")
            print_table(["model case", "instructions/step"], [[k, f"{v:,.0f}"] for k, v in counts["per_step"].items()])
            print("instruction ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in counts["ratios"].items()))
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    result = {
        "machine": info,
        "args": {k: str(v) for k, v in vars(args).items()},
        "models": results,
        "instructions": counts,
        "target": "callbacks <= 1.05 x bare (median); SAM reported (about 2x by nature)",
    }
    write_json(args, NAME, result)
    print(
        "ratio x bare (median): "
        + "; ".join(
            f"{m} " + ", ".join(f"{c} {results[m][c]['ratio_median']:.3f}" for c in cases_of(m)[1:]) for m in results
        )
    )
    return result


if __name__ == "__main__":
    main()
