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
    time_ops,
    write_json,
)
from lightning_reg import EarlyStopping, MaxNorm, MNISTDataModule, ScheduledDropout, WeightPenalty
from lightning_reg.models import MLPClassifier

NAME = "callback_overhead"
CASES = ("bare", "callbacks")  # the headline ratio and the memory figures
TIMED = ("bare", "callbacks", "raw")  # "raw": the callbacks' math alone, as plain callbacks (the reference rows)


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


STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
    "_after_optimizer_step",
)


def time_hooks(callback: pl.Callback, totals: dict[str, float]) -> None:
    """Wrap every hook ``callback`` overrides (and its optimizer post-hook) to add its run time to ``totals``
    under ``"<Class> step"`` (hooks that run every training step) or ``"<Class> other"`` (fit/epoch/validation)."""
    names = [
        n
        for n in dir(type(callback))
        if n.startswith("on_")
        and callable(getattr(type(callback), n))
        and getattr(type(callback), n) is not getattr(pl.Callback, n, None)
    ]
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


L2, MAX_NORM, DROPOUT = 1e-4, 3.0, (0.25, 0.1)


class RawPenalty(pl.Callback):
    """WeightPenalty's math and nothing else: ``_foreach_add_(grads, kernels, alpha=2λ)`` before each step."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.kernels = [p for p in pl_module.parameters() if p.ndim >= 2]  # WeightPenalty's selection on this MLP

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        with torch.no_grad():
            torch._foreach_add_([p.grad for p in self.kernels], self.kernels, alpha=2 * L2)


class RawMaxNorm(pl.Callback):
    """MaxNorm's math and nothing else: ``renorm_`` on every kernel after each optimizer step."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.kernels = [p for p in pl_module.parameters() if p.ndim >= 2]
        self.handle = trainer.optimizers[0].register_step_post_hook(self._after_optimizer_step)

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        with torch.no_grad():
            for p in self.kernels:
                p.renorm_(2, 0, MAX_NORM)

    def teardown(self, trainer, pl_module, stage) -> None:
        self.handle.remove()


class RawDropout(pl.Callback):
    """ScheduledDropout's work and nothing else: the linear rate, set on every dropout module before each step."""

    def __init__(self, total: int) -> None:
        from lightning_reg.core.schedules import Linear

        self.schedule = Linear(start=DROPOUT[0], end=DROPOUT[1], end_at=total)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.modules = [m for m in pl_module.modules() if isinstance(m, torch.nn.Dropout)]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        rate = self.schedule.at(trainer.global_step, trainer.current_epoch)
        for m in self.modules:
            m.p = rate


class RawBestCopy(pl.Callback):
    """EarlyStopping's restore-best-weights work and nothing else: a CPU copy of the state_dict at each improvement
    of ``val/loss`` (a fresh copy, as EarlyStopping did before it wrote into its own copy) and the restore at the
    end of training."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.weights: dict[str, Any] | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        value = float(trainer.callback_metrics["val/loss"])
        if value < self.best:
            self.best = value
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer, pl_module) -> None:
        if self.weights is not None:  # the restore at the end
            pl_module.load_state_dict(self.weights)


# Each callback and the raw math it performs (the "raw" case).
RAW_OF = {
    "WeightPenalty": "RawPenalty",
    "MaxNorm": "RawMaxNorm",
    "ScheduledDropout": "RawDropout",
    "EarlyStopping": "RawBestCopy",
}


def make_callbacks(case: str, total: int) -> list[pl.Callback]:
    if case == "callbacks":
        return [
            WeightPenalty(l2=L2),
            ScheduledDropout(
                {"name": "linear", "start": DROPOUT[0], "end": DROPOUT[1], "end_at": total},
                interval="step",
                verbose=False,
            ),
            EarlyStopping(monitor="val/loss", patience=100, restore_best_weights=True),
            MaxNorm(max_norm=MAX_NORM),
        ]
    if case == "raw":
        return [RawPenalty(), RawDropout(total), RawBestCopy(), RawMaxNorm()]
    return []


def make_run(
    case: str,
    args: Any,
    root: Path,
    hook_totals: dict[str, float] | None = None,
    extra: list[pl.Callback] | None = None,
    wrap: Any = None,
) -> tuple[pl.Trainer, MLPClassifier, MNISTDataModule, StepTimer]:
    torch.manual_seed(0)
    device = torch.device(args.device)
    dm = MNISTDataModule(
        data_dir=str(root), val_split=0.1, batch_size=128, seed=0, device_resident=args.data_path == "resident"
    )
    model = MLPClassifier(
        input_shape=(1, 28, 28),
        hidden_sizes=[500] * 5,
        dropout=0.25,
        optimizer=functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9),
    )
    total = args.steps * args.epochs
    callbacks = make_callbacks(case, total)
    for cb in callbacks:
        if hook_totals is not None:
            time_hooks(cb, hook_totals)
        if wrap is not None:
            wrap(cb)
    timer = StepTimer(device)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
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
    return trainer, model, dm, timer


def run_case(case: str, args: Any, root: Path) -> dict[str, Any]:
    hooks: dict[str, float] = {}
    trainer, model, dm, timer = make_run(case, args, root, hooks)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(model, datamodule=dm)
    out: dict[str, Any] = {
        "steps": timer.steps,
        "epochs": timer.epochs,
        "hooks_per_step_s": {k: v / trainer.global_step for k, v in hooks.items() if k.endswith("step")},
        "hooks_per_epoch_s": {k: v / trainer.current_epoch for k, v in hooks.items() if k.endswith("other")},
    }
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def standalone_raw(args: Any) -> dict[str, float]:
    """The raw math alone, in a hot loop in this process (µs per call, median of 200 after 20 warm-up calls)."""
    torch.manual_seed(0)
    model = MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500] * 5, dropout=0.25).to(args.device)
    kernels = [p for p in model.parameters() if p.ndim >= 2]
    grads = [torch.randn_like(p) for p in kernels]
    state = model.state_dict()
    kept = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def renorm() -> None:
        for p in kernels:
            p.renorm_(2, 0, MAX_NORM)

    def in_place() -> None:
        for k, v in state.items():
            kept[k].copy_(v)

    ops = {
        "foreach_add_(grads, kernels, alpha=2λ)": lambda: torch._foreach_add_(grads, kernels, alpha=2 * L2),
        "renorm_ on all kernels": renorm,
        "best-weights copy, fresh (.to(cpu, copy=True))": lambda: {
            k: v.detach().to("cpu", copy=True) for k, v in state.items()
        },
        "best-weights copy, in place (copy_)": in_place,
    }
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else None
    with torch.no_grad():
        seconds = time_ops(ops, warmup=20, calls=200, sync=sync)
    return {name: t * 1e6 for name, t in seconds.items()}


# ------------------------------------------------------------------------------------- instruction counts


class CountSteps(pl.Callback):
    """Under callgrind: instrument the training, and count ``steps`` whole loop iterations (from the end of batch 0
    to the end of batch ``steps``). The window is cut into regions: ``"<tag> hook <Class>"`` for each call of a
    callback's per-step hook (see :func:`count_hooks`) and ``"<tag> gap"`` for everything between them, so the sum
    of all regions is the steps' total and each callback's share is its own regions."""

    def __init__(self, steps: int, tag: str) -> None:
        from benchmarks import instructions

        self.ins, self.steps, self.tag, self.counting = instructions, steps, tag, False

    def on_train_start(self, trainer, pl_module) -> None:
        self.ins._library().cg_instrument(1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.counting = True
            self.ins.begin()
        elif batch_idx == self.steps:
            self.counting = False
            self.ins.end(f"{self.tag} gap")

    def on_train_end(self, trainer, pl_module) -> None:
        self.ins._library().cg_instrument(0)


def count_hooks(counter: CountSteps) -> Any:
    """A ``wrap`` for :func:`make_run`: inside the counting window, each per-step hook call is its own region."""
    from benchmarks import instructions

    def wrap(callback: pl.Callback) -> None:
        names = [
            n
            for n in STEP_HOOKS
            if hasattr(callback, n)
            and (n == "_after_optimizer_step" or getattr(type(callback), n) is not getattr(pl.Callback, n, None))
        ]
        for name in names:
            inner = getattr(callback, name)
            key = f"hook {type(callback).__name__}"

            def wrapped(*a: Any, _inner: Any = inner, _key: str = key, **k: Any) -> Any:
                if not counter.counting:
                    return _inner(*a, **k)
                instructions.end(f"{counter.tag} gap")
                instructions.begin()
                try:
                    return _inner(*a, **k)
                finally:
                    instructions.end(f"{counter.tag} {_key}")
                    instructions.begin()

            setattr(callback, name, wrapped)  # before on_fit_start, which registers the post-hook bound to it

    return wrap


def callgrind_child(args: Any, root: Path) -> None:
    """Runs under valgrind: per repeat, one short fit per case (regions as :class:`CountSteps` says), then the
    best-weights copy as EarlyStopping makes it and as the raw reference makes it."""
    from benchmarks import instructions

    k = args.cg_steps
    args.steps, args.epochs, args.val_batches = k + 1, 1, 1
    for r in range(args.cg_repeats):
        for case in TIMED:
            counter = CountSteps(k, f"r{r} {case}")
            trainer, model, dm, _ = make_run(case, args, root, extra=[counter], wrap=count_hooks(counter))
            trainer.fit(model, datamodule=dm)
            if case != "callbacks":
                continue
            es = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
            restorer = getattr(es, "restorer", None)  # the copy moved to RestoreBestWeights in issue 23
            with instructions.instrumented():
                if restorer is not None:
                    restorer._keep(model.state_dict())  # a fresh copy if a checkpoint took the last one
                    with instructions.region(f"r{r} copy EarlyStopping (in place)"):
                        restorer._keep(model.state_dict())
                elif hasattr(es, "_keep_best_weights"):  # between issues 15 and 23
                    es._keep_best_weights(trainer)
                    with instructions.region(f"r{r} copy EarlyStopping (in place)"):
                        es._keep_best_weights(trainer)
                with instructions.region(f"r{r} copy raw (state_dict + .to(cpu, copy=True))"):
                    {key: v.detach().to("cpu", copy=True) for key, v in model.state_dict().items()}
    print("callgrind child done")


def instruction_counts(args: Any, argv: list[str]) -> dict[str, Any]:
    """Run :func:`callgrind_child` under valgrind; instructions per step (per call for the copies), min/median/max
    over the repeats."""
    import tempfile

    from benchmarks import instructions

    why = instructions.available()
    if why is not None:
        return {"skipped": why}
    child_argv = [a for a in argv if a != "--quick"]
    with tempfile.TemporaryDirectory(prefix="callgrind_") as tmp:
        out_dir = Path(tmp)
        # A PYTHONPATH already set comes first (to count another checkout's lightning_reg with these benchmarks).
        path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                *instructions.valgrind_command(out_dir),
                sys.executable,
                "-m",
                "benchmarks.callback_overhead",
                *child_argv,
                "--threads",
                "1",
                "--callgrind-child",
                "--cg-steps",
                str(args.cg_steps),
                "--cg-repeats",
                str(args.cg_repeats),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env=env,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or "callgrind child done" not in proc.stdout:
            return {"skipped": f"the callgrind run failed (rc {proc.returncode}): {proc.stderr[-1500:]}"}
        raw = instructions.read_counts(out_dir)
    per: dict[str, list[float]] = {}
    steps: dict[tuple[str, str], float] = {}
    for name, values in raw.items():
        rep, case, what = name.split(" ", 2)
        if case == "copy":
            per.setdefault(f"copy {what}", []).append(sum(values))
            continue
        steps[(rep, case)] = steps.get((rep, case), 0.0) + sum(values) / args.cg_steps
        if what.startswith("hook "):
            per.setdefault(what, []).append(sum(values) / args.cg_steps)
    for (_rep, case), total in sorted(steps.items()):
        per.setdefault(f"step {case}", []).append(total)
    summary = {
        what: {"min": min(v), "median": statistics.median(v), "max": max(v), "n": len(v)} for what, v in per.items()
    }
    return {
        "per_step_or_call": summary,
        "steps_per_region": args.cg_steps,
        "repeats": args.cg_repeats,
        "wall_s": wall,
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "how": "valgrind --tool=callgrind, instrumentation only in marked regions (benchmarks/instructions.py), "
        "1 thread, OMP_NUM_THREADS=1",
    }


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
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.callback_overhead", *argv, "--memory-case", case],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
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
    parser.add_argument(
        "--instructions",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also count instructions under valgrind's callgrind (default: on, off with --quick, "
        "where one fit under valgrind would take longer than the whole smoke run; skipped, "
        "with the reason, when valgrind is missing)",
    )
    parser.add_argument("--cg-steps", type=int, default=4, help="training steps counted per case under callgrind")
    parser.add_argument("--cg-repeats", type=int, default=3, help="repeats of the callgrind counts")
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions-only",
        action="store_true",
        help="only the callgrind counts, as JSON on stdout (no wall-time cases)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.instructions is None:
        args.instructions = not args.quick
    if args.quick:
        args.repeats, args.steps, args.epochs, args.val_batches = 1, 4, 2, 1
        args.cg_steps, args.cg_repeats = 2, 1
    torch.set_num_threads(args.threads)
    quiet_lightning()
    root, source = mnist_root(args.data_dir)
    if args.memory_case is not None:
        print(json.dumps(cpu_memory_child(args.memory_case, args, root)))
        return {}
    if args.callgrind_child:
        callgrind_child(args, root)
        return {}
    if args.instructions_only:
        import lightning_reg

        counts = instruction_counts(args, argv)
        print(json.dumps({"lightning_reg": lightning_reg.__file__, **counts}, indent=1, default=str))
        return counts

    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(
        f"data: {source}; 784-500x5-10 MLP (dropout 0.25), SGD, batch 128, {args.data_path} data path; "
        f"{args.repeats} repeats x {args.epochs} epochs x {args.steps} steps (+{args.val_batches} val batches), after 1 untimed warm-up fit per case"
    )
    per_repeat: dict[str, list[float]] = {c: [] for c in TIMED}
    epoch_repeat: dict[str, list[float]] = {c: [] for c in TIMED}
    fastest = {c: float("inf") for c in TIMED}
    fastest_epoch = {c: float("inf") for c in TIMED}
    gpu_peak: dict[str, float] = {}
    hook_runs: list[dict[str, float]] = []
    raw_runs: list[dict[str, float]] = []
    for case in TIMED:  # untimed warm-up: the first fits of a process pay for first-touch pages and lazy init
        run_case(case, args, root)
    for r in range(args.repeats):
        order = list(TIMED[r % len(TIMED) :]) + list(TIMED[: r % len(TIMED)])  # rotated, as run_interleaved
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
            if case == "raw":
                raw_runs.append({**res["hooks_per_step_s"], **res["hooks_per_epoch_s"]})
            if "peak_mb" in res:
                gpu_peak[case] = max(gpu_peak.get(case, 0.0), res["peak_mb"])
        print(
            f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{c} {this[c] * 1e3:.2f} ms/step" for c in TIMED),
            flush=True,
        )
    steps = paired_summary(per_repeat, fastest, "bare")
    epochs = paired_summary(epoch_repeat, fastest_epoch, "bare")
    if torch.device(args.device).type == "cuda":
        memory = {c: {"peak_mb": gpu_peak[c], "how": "torch.cuda.max_memory_allocated during fit"} for c in CASES}
    else:
        child_argv = [a for a in argv if a != "--quick"] + (["--quick"] if args.quick else [])
        memory = {
            c: {
                **cpu_memory(c, child_argv),
                "how": "fresh process: VmHWM after fit - VmRSS before fit (peak reset via /proc/self/clear_refs)",
            }
            for c in CASES
        }
    breakdown = {k: statistics.median(run.get(k, 0.0) for run in hook_runs) * 1e3 for k in hook_runs[0]}
    hooks: dict[str, Any] = {
        "step_ms": statistics.median(sum(v for k, v in run.items() if k.endswith("step")) for run in hook_runs) * 1e3,
        "per_epoch_other_ms": statistics.median(
            sum(v for k, v in run.items() if k.endswith("other")) for run in hook_runs
        )
        * 1e3,
        "breakdown_ms": breakdown,  # "<Class> step": ms per step; "<Class> other": ms per epoch
    }
    # Each callback's hook time over the time of the raw math it performs, in the same repeat (same process, same
    # cache state: both run inside the training loop).
    vs_raw: dict[str, Any] = {}
    for cls, raw_cls in RAW_OF.items():
        kind = "other" if cls == "EarlyStopping" else "step"
        pairs = [(h.get(f"{cls} {kind}", 0.0), w.get(f"{raw_cls} {kind}", 0.0)) for h, w in zip(hook_runs, raw_runs)]
        ratios = [a / b for a, b in pairs if b > 0]
        vs_raw[cls] = {
            "per": "epoch" if kind == "other" else "step",
            "hook_us": statistics.median(a for a, _ in pairs) * 1e6,
            "raw_us": statistics.median(b for _, b in pairs) * 1e6,
            "ratio_median": statistics.median(ratios) if ratios else float("nan"),
            "ratio_min": min(ratios) if ratios else float("nan"),
            "ratio_max": max(ratios) if ratios else float("nan"),
        }
    hooks["vs_raw"] = vs_raw
    hooks["step_pct_of_bare_median"] = 100 * hooks["step_ms"] / 1e3 / steps["bare"]["median_s"]
    hooks["step_pct_of_bare_fastest"] = 100 * hooks["step_ms"] / 1e3 / steps["bare"]["fastest_s"]
    mem_key = "peak_mb" if "peak_mb" in memory["bare"] else "peak_added_mb"
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        [
            "case",
            "median step ms",
            "x bare (median)",
            "fastest step ms",
            "x bare (fastest)",
            "median epoch ms",
            "epoch x bare",
            "peak memory MB",
            "memory x bare",
        ],
        [
            [
                c,
                f"{steps[c]['median_s'] * 1e3:.2f}",
                f"{steps[c]['ratio_median']:.3f}",
                f"{steps[c]['fastest_s'] * 1e3:.2f}",
                f"{steps[c]['ratio_fastest']:.3f}",
                f"{epochs[c]['median_s'] * 1e3:.1f}",
                f"{epochs[c]['ratio_median']:.3f}",
                f"{memory[c][mem_key]:.1f}",
                f"{memory[c][mem_key] / memory['bare'][mem_key]:.3f}" if memory["bare"][mem_key] > 0 else "n/a",
            ]
            for c in CASES
        ],
    )
    print()
    print(
        "raw math in the training loop (the 'raw' case: the same math as plain callbacks) vs the callbacks' hooks, "
        "median over repeats, same process:"
    )
    print_table(
        ["callback", "per", "hook µs", "raw math µs", "x raw (median)", "min", "max", "target"],
        [
            [
                cls,
                v["per"],
                f"{v['hook_us']:.1f}",
                f"{v['raw_us']:.1f}",
                f"{v['ratio_median']:.3f}",
                f"{v['ratio_min']:.3f}",
                f"{v['ratio_max']:.3f}",
                "<= 1.3" if cls != "ScheduledDropout" else "-",
            ]
            for cls, v in vs_raw.items()
        ],
    )
    standalone = standalone_raw(args)
    print()
    print("raw math alone, hot loop in this process (µs per call, median of 200):")
    print_table(["op", "µs"], [[k, f"{v:.1f}"] for k, v in standalone.items()])
    print(
        f"step x raw-math case: callbacks {steps['callbacks']['median_s'] / steps['raw']['median_s']:.3f} "
        f"(median step over median step), raw x bare {steps['raw']['ratio_median']:.3f}"
    )
    counts: dict[str, Any] = {"skipped": "--no-instructions"}
    if args.instructions:
        counts = instruction_counts(args, argv)
        print()
        if "skipped" in counts:
            print(f"instruction counts skipped: {counts['skipped']}")
        else:
            c = counts["per_step_or_call"]
            print(
                f"instructions (callgrind, {counts['steps_per_region']} steps per region, {counts['repeats']} "
                f"repeats, {counts['wall_s']:.0f} s under valgrind; per step, copies per call):"
            )
            rows = [[k, f"{v['median']:,.0f}", f"{v['min']:,.0f}", f"{v['max']:,.0f}"] for k, v in sorted(c.items())]
            print_table(["region", "median", "min", "max"], rows)
            ratios = {}
            if "step bare" in c and "step callbacks" in c:
                ratios["callbacks x bare (step)"] = c["step callbacks"]["median"] / c["step bare"]["median"]
                ratios["raw x bare (step)"] = c["step raw"]["median"] / c["step bare"]["median"]
            for cls, raw_cls in RAW_OF.items():
                a, b = c.get(f"hook {cls}"), c.get(f"hook {raw_cls}")
                if a and b:
                    ratios[f"{cls} hook x raw"] = a["median"] / b["median"]
            counts["ratios"] = ratios
            print("instruction ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    result = {
        "machine": info,
        "data": source,
        "args": {k: str(v) for k, v in vars(args).items()},
        "step": steps,
        "epoch": epochs,
        "memory": memory,
        "hooks": hooks,
        "raw_standalone_us": standalone,
        "instructions": counts,
        "ratio_step_median": steps["callbacks"]["ratio_median"],
        "ratio_step_fastest": steps["callbacks"]["ratio_fastest"],
        "ratio_epoch_median": epochs["callbacks"]["ratio_median"],
        "hook_pct_of_bare_step": hooks["step_pct_of_bare_median"],
        "target": "callbacks <= 1.04 x bare (median); each callback's hook <= 1.3 x its raw math",
    }
    print(
        f"time inside the callbacks' hooks (median over repeats): {hooks['step_ms']:.3f} ms per step = "
        f"{hooks['step_pct_of_bare_median']:.2f}% of the median bare step ({hooks['step_pct_of_bare_fastest']:.2f}% "
        f"of the fastest); {hooks['per_epoch_other_ms']:.2f} ms per epoch in fit/epoch/validation hooks"
    )
    print(
        "  per callback: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(breakdown.items()) if v >= 0.0005)
        + " (step: per step; other: per epoch)"
    )
    write_json(args, NAME, result)
    print(
        f"ratio callbacks/bare: step {result['ratio_step_median']:.3f} (median), "
        f"{result['ratio_step_fastest']:.3f} (fastest), hooks {hooks['step_pct_of_bare_median'] / 100 + 1:.3f}; epoch {result['ratio_epoch_median']:.3f}; memory "
        + (f"{memory['callbacks'][mem_key] / memory['bare'][mem_key]:.3f}" if memory["bare"][mem_key] > 0 else "n/a")
    )
    return result


if __name__ == "__main__":
    main()
