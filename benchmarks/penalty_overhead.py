"""Step-time overhead of an L2 penalty: callback vs penalty-in-loss vs torch's weight_decay.

Model: the source material's MNIST MLP, 784 -> 500 x5 (ReLU) -> 10, batch 128, plain SGD, one process,
as a lean LightningModule (cross-entropy only, no metrics or logging, so that the overhead is measured
against the smallest possible step). Data: random MNIST-shaped tensors (the step time does not depend on
pixel values). Four cases, all with the same L2 strength:

- ``bare``: no penalty;
- ``WeightPenalty(l2)``: ``WeightPenalty(l2=1e-4)`` (fused foreach update in ``on_before_optimizer_step``);
- ``penalty-in-loss``: ``loss + self.penalty_loss()`` through :class:`lightning_reg.PenaltyLossMixin`;
- ``weight_decay``: ``torch.optim.SGD(weight_decay=2e-4)`` (gradient 2·1e-4·w, on every parameter).

A step is timed from ``on_train_batch_start`` to ``on_train_batch_end`` (forward, backward, hooks, optimizer
step). Each repeat runs every case once, in a rotated order, for ``--warmup`` untimed steps and ``--steps``
timed ones. Two estimates of the ratio to bare are printed, because a shared machine adds bursts of delay:

- ``x bare``: per repeat, the median step time of each case over that repeat's bare median; the median of
  these paired ratios over repeats (pairing cancels slow drifts);
- ``fastest``: the fastest step of each case over the fastest bare step (contention only ever adds time,
  so the fastest steps are the least disturbed).

The time spent inside ``WeightPenalty.on_before_optimizer_step`` itself is also measured (median over all
steps), as the most direct, noise-robust figure of what the callback adds.

Usage:
    python benchmarks/penalty_overhead.py                 # full: 10 repeats x 30 steps
    python benchmarks/penalty_overhead.py --quick         # smoke test: a few seconds
    python benchmarks/penalty_overhead.py --steps 60 --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_reg import PenaltyLossMixin, WeightPenalty  # noqa: E402

L2 = 1e-4
CASES = ("bare", "WeightPenalty(l2)", "penalty-in-loss", "weight_decay")


class MLP(pl.LightningModule):
    """784 -> 500 x5 -> 10 ReLU MLP with plain SGD; nothing else in the step."""

    def __init__(self, weight_decay: float = 0.0, lr: float = 0.01) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = 784
        for _ in range(5):
            layers += [nn.Linear(width, 500), nn.ReLU()]
            width = 500
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)
        self.weight_decay, self.lr = weight_decay, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class MLPPenaltyInLoss(PenaltyLossMixin, MLP):
    def __init__(self) -> None:
        super().__init__()
        self.configure_penalty(l2=L2)

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + self.penalty_loss()


class TimedWeightPenalty(WeightPenalty):
    """WeightPenalty that records how long its gradient hook takes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.hook_times: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        t0 = time.perf_counter()
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.hook_times.append(time.perf_counter() - t0)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._t0 = warmup, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._t0)


def run_case(case: str, loader: DataLoader, warmup: int, steps: int, hook_times: list[float]) -> list[float]:
    torch.manual_seed(0)
    callbacks: list[pl.Callback] = []
    if case == "bare":
        model: MLP = MLP()
    elif case == "WeightPenalty(l2)":
        model = MLP()
        callbacks.append(TimedWeightPenalty(l2=L2, log_every_n_steps=0))
    elif case == "penalty-in-loss":
        model = MLPPenaltyInLoss()
    else:
        model = MLP(weight_decay=2 * L2)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        limit_val_batches=0,
        callbacks=callbacks + [timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    for cb in callbacks:
        if isinstance(cb, TimedWeightPenalty):
            hook_times.extend(cb.hook_times[warmup:])
    return timer.times


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per case and repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per case and repeat")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved repeats of all four cases")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 2 warm-up + 4 timed steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 4, 2, 1
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    n = 128 * (args.warmup + args.steps)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    loader = DataLoader(data, batch_size=128, shuffle=False)

    medians: dict[str, list[float]] = {c: [] for c in CASES}
    fastest: dict[str, float] = {c: float("inf") for c in CASES}
    ratios: dict[str, list[float]] = {c: [] for c in CASES}
    hook_times: list[float] = []
    print(
        f"torch {torch.__version__}, lightning {pl.__version__}, threads={args.threads}, batch=128, "
        f"784-500x5-10 MLP, SGD; {args.repeats} repeats x {args.steps} timed steps (+{args.warmup} warm-up)"
    )
    for r in range(args.repeats):
        order = CASES[r % len(CASES) :] + CASES[: r % len(CASES)]
        this = {}
        for c in order:
            times = run_case(c, loader, args.warmup, args.steps, hook_times)
            this[c] = statistics.median(times)
            fastest[c] = min(fastest[c], min(times))
        for c in CASES:
            medians[c].append(this[c])
            ratios[c].append(this[c] / this["bare"])
        print(f"repeat {r + 1}: " + ", ".join(f"{c} {this[c] * 1e3:.2f} ms" for c in CASES), flush=True)
    hook = statistics.median(hook_times)
    print(
        f"WeightPenalty gradient hook: median {hook * 1e3:.3f} ms/step = {hook / fastest['bare'] * 100:.2f}% of the "
        f"fastest bare step, {hook / statistics.median(medians['bare']) * 100:.2f}% of the median bare step"
    )
    result = {}
    for c in CASES:
        result[c] = statistics.median(ratios[c])
        print(
            f"{c:<18} {statistics.median(medians[c]) * 1e3:8.3f} ms/step  {result[c]:.3f} x bare   "
            f"(fastest step {fastest[c] * 1e3:.3f} ms, {fastest[c] / fastest['bare']:.3f} x bare)"
        )
    return result


if __name__ == "__main__":
    main()
