"""Callback overhead: bare Lightning vs bare Lightning + all of lightning_reg's training-time callbacks.

Model: the source material's 784-500x5-10 MLP, ``MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500] * 5,
dropout=0.25)``, SGD (lr 0.05, momentum 0.9), batch 128, on the MNIST subset (generated MNIST-shaped data
when the files are absent), through ``MNISTDataModule`` (``--data-path resident``: device-resident batches,
the smallest step and so the strictest denominator; ``loader``: the standard DataLoader path).

Cases, in one process, interleaved (each repeat runs both, in alternating order, on fresh models):

- ``bare``: the model alone. Its dropout modules keep p = 0.25.
- ``callbacks``: the same model with ``WeightPenalty(l2=1e-4)``, ``ScheduledDropout`` (linear 0.25 -> 0.1 over
  the run, set before every step), ``EarlyStopping(monitor="val/loss", restore_best_weights=True)`` (a copy of
  the best weights at every improvement) and ``MaxNorm(3.0)``.

Both cases have the same dropout modules, so the difference is what the callbacks add, not dropout itself.

What is timed (the fair part):

- **step**: the interval between consecutive ``on_train_batch_end`` calls of a timer placed after all other
  callbacks, within an epoch: one whole loop iteration (fetch, transfer, every callback hook, forward,
  backward, penalty gradient, optimizer step, max-norm post-hook, logging). The first interval of each fit's
  first epoch is dropped (warm-up). Trainer construction and setup are not in it.
- **epoch**: ``on_train_epoch_start`` to ``on_train_epoch_end``: the steps plus validation and EarlyStopping's
  end-of-validation work (the best-weights copy).

Two ratio estimates, because the machine is shared: ``median`` (per repeat, each case's median over the bare
median; the median of these paired ratios) and ``fastest`` (the fastest step over the fastest bare step).
A third, noise-robust figure: the time spent inside the callbacks' own hooks (every hook they override, and
the optimizer step post-hooks of WeightPenalty/MaxNorm), per step, as a share of the bare step. It misses
indirect costs (cache effects) but not the work itself. The wrappers cost about 1 µs per hook call, under
0.1% of a step, and are in the ``callbacks`` case only.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` during each fit (reset before it). On the CPU there
is no allocator counter and ``ru_maxrss`` only grows within a process, so each case's memory is measured in a
fresh child process: ``/proc/self/clear_refs`` resets the kernel's peak RSS (VmHWM) right before ``fit`` (after
the data are loaded), and the figure is VmHWM after ``fit`` minus VmRSS before it: the peak resident memory
that training itself added (model, optimizer state, activations, callback state), whatever allocated it.

    python -m benchmarks.callback_overhead [--quick] [--repeats 10] [--steps 30] [--epochs 2] [--device cuda]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from benchmarks.common import (
    REPO,
    base_parser,
    describe,
    machine_info,
    mnist_root,
    paired_summary,
    print_table,
    quiet_lightning,
    read_status_kb,
    reset_peak_rss,
    write_json,
)
from lightning_reg import EarlyStopping, MaxNorm, MNISTDataModule, ScheduledDropout, WeightPenalty
from lightning_reg.models import MLPClassifier

NAME = "callback_overhead"
CASES = ("bare", "callbacks")


class StepTimer(pl.Callback):
    """Loop-iteration intervals (``on_train_batch_end`` to the next one) and epoch times; place it last."""

    def __init__(self, device: torch.device, skip_first: int = 1) -> None:
        self.device, self.skip_first = device, skip_first
        self.steps: list[float] = []
        self.epochs: list[float] = []
        self._last: float | None = None
        self._epoch_t0 = 0.0
        self._seen = 0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_t0 = self._now()
        self._last = self._epoch_t0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now()
        self._seen += 1
        if self._seen > self.skip_first and self._last is not None:
            self.steps.append(now - self._last)
        self._last = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(self._now() - self._epoch_t0)


STEP_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
              "on_before_zero_grad", "on_train_batch_end", "_after_optimizer_step")


def time_hooks(callback: pl.Callback, totals: dict[str, float]) -> None:
    """Wrap every hook ``callback`` overrides (and its optimizer post-hook) to add its run time to ``totals``
    under ``"<Class> step"`` (hooks that run every training step) or ``"<Class> other"`` (fit/epoch/validation)."""
    names = [n for n in dir(type(callback)) if n.startswith("on_") and callable(getattr(type(callback), n))
             and getattr(type(callback), n) is not getattr(pl.Callback, n, None)]
    if hasattr(callback, "_after_optimizer_step"):
        names.append("_after_optimizer_step")
    for name in names:
        inner = getattr(callback, name)
        key = f"{type(callback).__name__} {'step' if name in STEP_HOOKS else 'other'}"

        def wrapped(*a: Any, _inner: Any = inner, _key: str = key, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _inner(*a, **k)
            finally:
                totals[_key] = totals.get(_key, 0.0) + time.perf_counter() - t0

        setattr(callback, name, wrapped)


def make_run(case: str, args: Any, root: Path, hook_totals: dict[str, float] | None = None
             ) -> tuple[pl.Trainer, MLPClassifier, MNISTDataModule, StepTimer]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    dm = MNISTDataModule(data_dir=str(root), val_split=0.1, batch_size=128, seed=0,
                         device_resident=args.data_path == "resident")
    model = MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500] * 5, dropout=0.25,
                          optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9))
    total = args.steps * args.epochs
    callbacks: list[pl.Callback] = []
    if case == "callbacks":
        callbacks = [
            WeightPenalty(l2=1e-4),
            ScheduledDropout({"name": "linear", "start": 0.25, "end": 0.1, "end_at": total}, interval="step",
                             verbose=False),
            EarlyStopping(monitor="val/loss", patience=100, restore_best_weights=True),
            MaxNorm(max_norm=3.0),
        ]
        if hook_totals is not None:
            for cb in callbacks:
                time_hooks(cb, hook_totals)
    timer = StepTimer(device)
    trainer = pl.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=args.epochs,
                         limit_train_batches=args.steps, limit_val_batches=args.val_batches, num_sanity_val_steps=0,
                         callbacks=[*callbacks, timer], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    return trainer, model, dm, timer


def run_case(case: str, args: Any, root: Path) -> dict[str, Any]:
    hooks: dict[str, float] = {}
    trainer, model, dm, timer = make_run(case, args, root, hooks)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, datamodule=dm)
    out: dict[str, Any] = {"steps": timer.steps, "epochs": timer.epochs,
                           "hooks_per_step_s": {k: v / trainer.global_step for k, v in hooks.items() if k.endswith("step")},
                           "hooks_per_epoch_s": {k: v / trainer.current_epoch for k, v in hooks.items()
                                                 if k.endswith("other")}}
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def cpu_memory_child(case: str, args: Any, root: Path) -> dict[str, float]:
    """Runs in a fresh process: peak RSS that ``fit`` added over the RSS before it (MB)."""
    trainer, model, dm, _ = make_run(case, args, root)
    dm.setup("fit")  # data loading is not training memory
    reset = reset_peak_rss()
    before = read_status_kb("VmRSS")
    trainer.fit(model, datamodule=dm)
    peak = read_status_kb("VmHWM") if reset else -1
    return {"rss_before_mb": before / 1024, "peak_added_mb": (peak - before) / 1024 if reset and before >= 0 else -1}


def cpu_memory(case: str, argv: list[str]) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.callback_overhead", *argv, "--memory-case", case],
                          capture_output=True, text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {case!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10, help="interleaved repeats of both cases")
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fit (validation + EarlyStopping between)")
    parser.add_argument("--val-batches", type=int, default=4, help="validation batches per epoch")
    parser.add_argument("--data-path", choices=("resident", "loader"), default="resident")
    parser.add_argument("--memory-case", choices=CASES, default=None, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.epochs, args.val_batches = 1, 4, 2, 1
    torch.set_num_threads(args.threads)
    quiet_lightning()
    root, source = mnist_root(args.data_dir)
    if args.memory_case is not None:
        print(json.dumps(cpu_memory_child(args.memory_case, args, root)))
        return {}

    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(f"data: {source}; 784-500x5-10 MLP (dropout 0.25), SGD, batch 128, {args.data_path} data path; "
          f"{args.repeats} repeats x {args.epochs} epochs x {args.steps} steps (+{args.val_batches} val batches), after 1 untimed warm-up fit per case")
    per_repeat: dict[str, list[float]] = {c: [] for c in CASES}
    epoch_repeat: dict[str, list[float]] = {c: [] for c in CASES}
    fastest = {c: float("inf") for c in CASES}
    fastest_epoch = {c: float("inf") for c in CASES}
    gpu_peak: dict[str, float] = {}
    hook_runs: list[dict[str, float]] = []
    for case in CASES:  # untimed warm-up: the first fits of a process pay for first-touch pages and lazy init
        run_case(case, args, root)
    for r in range(args.repeats):
        order = CASES if r % 2 == 0 else CASES[::-1]
        this = {}
        for case in order:
            res = run_case(case, args, root)
            this[case] = statistics.median(res["steps"])
            per_repeat[case].append(this[case])
            epoch_repeat[case].append(statistics.median(res["epochs"]))
            fastest[case] = min(fastest[case], min(res["steps"]))
            fastest_epoch[case] = min(fastest_epoch[case], min(res["epochs"]))
            if case == "callbacks":
                hook_runs.append({**res["hooks_per_step_s"], **res["hooks_per_epoch_s"]})
            if "peak_mb" in res:
                gpu_peak[case] = max(gpu_peak.get(case, 0.0), res["peak_mb"])
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{c} {this[c] * 1e3:.2f} ms/step" for c in CASES),
              flush=True)
    steps = paired_summary(per_repeat, fastest, "bare")
    epochs = paired_summary(epoch_repeat, fastest_epoch, "bare")
    if torch.device(args.device).type == "cuda":
        memory = {c: {"peak_mb": gpu_peak[c], "how": "torch.cuda.max_memory_allocated during fit"} for c in CASES}
    else:
        child_argv = [a for a in argv if a != "--quick"] + (["--quick"] if args.quick else [])
        memory = {c: {**cpu_memory(c, child_argv),
                      "how": "fresh process: VmHWM after fit - VmRSS before fit (peak reset via /proc/self/clear_refs)"}
                  for c in CASES}
    breakdown = {k: statistics.median(run.get(k, 0.0) for run in hook_runs) * 1e3 for k in hook_runs[0]}
    hooks: dict[str, Any] = {
        "step_ms": statistics.median(sum(v for k, v in run.items() if k.endswith("step")) for run in hook_runs) * 1e3,
        "per_epoch_other_ms": statistics.median(sum(v for k, v in run.items() if k.endswith("other"))
                                                for run in hook_runs) * 1e3,
        "breakdown_ms": breakdown,  # "<Class> step": ms per step; "<Class> other": ms per epoch
    }
    hooks["step_pct_of_bare_median"] = 100 * hooks["step_ms"] / 1e3 / steps["bare"]["median_s"]
    hooks["step_pct_of_bare_fastest"] = 100 * hooks["step_ms"] / 1e3 / steps["bare"]["fastest_s"]
    mem_key = "peak_mb" if "peak_mb" in memory["bare"] else "peak_added_mb"
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        ["case", "median step ms", "x bare (median)", "fastest step ms", "x bare (fastest)", "median epoch ms",
         "epoch x bare", "peak memory MB", "memory x bare"],
        [[c, f"{steps[c]['median_s'] * 1e3:.2f}", f"{steps[c]['ratio_median']:.3f}",
          f"{steps[c]['fastest_s'] * 1e3:.2f}", f"{steps[c]['ratio_fastest']:.3f}",
          f"{epochs[c]['median_s'] * 1e3:.1f}", f"{epochs[c]['ratio_median']:.3f}",
          f"{memory[c][mem_key]:.1f}",
          f"{memory[c][mem_key] / memory['bare'][mem_key]:.3f}" if memory["bare"][mem_key] > 0 else "n/a"]
         for c in CASES])
    result = {
        "machine": info, "data": source, "args": {k: str(v) for k, v in vars(args).items()},
        "step": steps, "epoch": epochs, "memory": memory, "hooks": hooks,
        "ratio_step_median": steps["callbacks"]["ratio_median"],
        "ratio_step_fastest": steps["callbacks"]["ratio_fastest"],
        "ratio_epoch_median": epochs["callbacks"]["ratio_median"],
        "hook_pct_of_bare_step": hooks["step_pct_of_bare_median"],
        "target": "callbacks <= 1.05 x bare on the CPU",
    }
    print(f"time inside the callbacks' hooks (median over repeats): {hooks['step_ms']:.3f} ms per step = "
          f"{hooks['step_pct_of_bare_median']:.2f}% of the median bare step ({hooks['step_pct_of_bare_fastest']:.2f}% "
          f"of the fastest); {hooks['per_epoch_other_ms']:.2f} ms per epoch in fit/epoch/validation hooks")
    print("  per callback: " + ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(breakdown.items()) if v >= 0.0005)
          + " (step: per step; other: per epoch)")
    write_json(args, NAME, result)
    print(f"ratio callbacks/bare: step {result['ratio_step_median']:.3f} (median), "
          f"{result['ratio_step_fastest']:.3f} (fastest), hooks {hooks['step_pct_of_bare_median'] / 100 + 1:.3f}; epoch {result['ratio_epoch_median']:.3f}; memory "
          + (f"{memory['callbacks'][mem_key] / memory['bare'][mem_key]:.3f}" if memory["bare"][mem_key] > 0 else "n/a"))
    return result


if __name__ == "__main__":
    main()
