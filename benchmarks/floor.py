"""Distance from the floor: one epoch of the same regularized training, hand-written PyTorch vs lightning_reg.

The training: the 784-500x5-10 MLP with dropout, SGD (lr 0.05, momentum 0.9), batch 128, one epoch over the
MNIST subset's training split (90% of the training files; generated MNIST-shaped data when they are absent),
with an L2 penalty (1e-4·Σw² on the Linear kernels: gradient 2e-4·w), dropout whose rate goes linearly from
0.25 to 0.1 over the epoch (set before every step), and max-norm 3 on every Linear kernel after every step.
Each form also accumulates the epoch's training loss and accuracy, as the reference models log them.

Forms, in one process, interleaved (each repeat runs every form once, in a rotated order, on fresh models):

- ``hand``: a hand-written loop. The split is converted to float once and kept as tensors on the device; a
  ``randperm`` per epoch, index gathers, ``torch._foreach_add_`` for the L2 gradient, ``renorm_`` for max-norm.
  No DataLoader, no Lightning.
- ``resident``: ``MLPClassifier`` + ``MNISTDataModule(device_resident=True)`` + ``WeightPenalty(l2=1e-4)``,
  ``ScheduledDropout`` and ``MaxNorm(3.0)`` in a Lightning ``Trainer``.
- ``loader``: the same with the standard DataLoader path (``device_resident=False``, ``num_workers=0``).
- ``bare_resident`` (reference): ``resident`` without the three callbacks (fixed dropout 0.25, no penalty or
  max-norm): splits the distance into what Lightning and the data path cost and what the callbacks add.
- ``bare_loader`` (reference): bare Lightning, no callbacks, the same model on a ``TensorDataset`` DataLoader of
  float tensors, fixed dropout 0.25 and no penalty or max-norm: what plain Lightning costs.

Timed: the epoch, ``on_train_epoch_start`` to ``on_train_epoch_end`` (the loop, hooks, logging; no validation;
Trainer construction and setup are excluded), and for the hand loop the epoch loop including a final sync.
The full ``fit`` wall time (with Trainer setup and teardown) is reported beside it. Ratios are to ``hand``:
the median of per-repeat ratios and the fastest epoch over the fastest hand epoch.

    python -m benchmarks.floor [--quick] [--repeats 7] [--device cuda]
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import (
    base_parser,
    describe,
    machine_info,
    mnist_root,
    paired_summary,
    print_table,
    quiet_lightning,
    run_interleaved,
    write_json,
)
from lightning_reg import MaxNorm, MNISTDataModule, ScheduledDropout, WeightPenalty
from lightning_reg.models import MLPClassifier

NAME = "floor"
FORMS = ("hand", "resident", "loader", "bare_resident", "bare_loader")
L2, MAX_NORM, LR, MOMENTUM, BATCH = 1e-4, 3.0, 0.05, 0.9, 128
P_START, P_END = 0.25, 0.1


def dropout_rate(step: int, total: int) -> float:
    """The linear schedule both sides use: P_START at step 0 to P_END at ``total``."""
    return P_START + (P_END - P_START) * min(step / max(total, 1), 1.0)


def build_model() -> MLPClassifier:
    torch.manual_seed(0)
    return MLPClassifier(
        input_shape=(1, 28, 28),
        hidden_sizes=[500] * 5,
        dropout=P_START,
        optimizer=functools.partial(torch.optim.SGD, lr=LR, momentum=MOMENTUM),
    )


def hand_net() -> nn.Sequential:
    """The same network written out by hand (same layer order, so the same initial weights under one seed)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for _ in range(5):
        layers += [nn.Linear(width, 500), nn.ReLU(), nn.Dropout(P_START)]
        width = 500
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_hand(x_u8: torch.Tensor, y: torch.Tensor, device: torch.device, steps: int | None) -> dict[str, float]:
    t_fit = time.perf_counter()
    net = hand_net().to(device)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    kernels = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    x = x_u8.to(device).float().div_(255)  # once, up front, as a hand-written loop would
    y = y.to(device)
    gen = torch.Generator().manual_seed(0)
    n = x.shape[0]
    n_batches = -(-n // BATCH) if steps is None else min(steps, -(-n // BATCH))
    sync(device)
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=gen).to(device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for b in range(n_batches):
        idx = perm[b * BATCH : (b + 1) * BATCH]
        xb, yb = x[idx], y[idx]
        rate = dropout_rate(b, n_batches)
        for m in drops:
            m.p = rate
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch._foreach_add_([w.grad for w in kernels], kernels, alpha=2 * L2)
        opt.step()
        with torch.no_grad():
            for w in kernels:
                w.renorm_(2, 0, MAX_NORM)
        loss_sum += loss.detach() * yb.shape[0]
        correct += (logits.detach().argmax(1) == yb).sum()
    float(loss_sum), int(correct)  # the epoch's metrics, as Lightning's epoch-end logging syncs them
    sync(device)
    t1 = time.perf_counter()
    return {"epoch_s": t1 - t0, "fit_s": t1 - t_fit}


class EpochTimer(pl.Callback):
    """``on_train_epoch_start`` to ``on_train_epoch_end``; place it after every other callback."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.t0, self.seconds = device, 0.0, 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sync(self.device)
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.t0


def run_lightning(
    form: str, root: Path, data: tuple[torch.Tensor, torch.Tensor], device: torch.device, steps: int | None
) -> dict[str, float]:
    t_fit = time.perf_counter()
    model = build_model()
    timer = EpochTimer(device)
    n_batches = -(-data[0].shape[0] // BATCH) if steps is None else steps
    callbacks: list[pl.Callback] = []
    if not form.startswith("bare"):
        callbacks = [
            WeightPenalty(l2=L2),
            ScheduledDropout(
                {"name": "linear", "start": P_START, "end": P_END, "end_at": n_batches}, interval="step", verbose=False
            ),
            MaxNorm(max_norm=MAX_NORM),
        ]
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=steps if steps is not None else 1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if form == "bare_loader":
        x, y = data
        loader = DataLoader(TensorDataset(x.float().div(255), y), batch_size=BATCH, shuffle=True)
        trainer.fit(model, train_dataloaders=loader)
    else:
        dm = MNISTDataModule(
            data_dir=str(root),
            val_split=0.1,
            batch_size=BATCH,
            seed=0,
            device_resident=form in ("resident", "bare_resident"),
        )
        trainer.fit(model, datamodule=dm)
    sync(device)
    return {"epoch_s": timer.seconds, "fit_s": time.perf_counter() - t_fit}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats of all forms")
    parser.add_argument("--steps", type=int, default=None, help="limit the epoch to this many steps (default: all)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.repeats, args.steps = 1, args.steps or 4
    torch.set_num_threads(args.threads)
    quiet_lightning()
    device = torch.device(args.device)
    root, source = mnist_root(args.data_dir)
    # The exact training split the DataModule uses (for the hand loop and the TensorDataset reference).
    probe = MNISTDataModule(data_dir=str(root), val_split=0.1, batch_size=BATCH, seed=0)
    probe.setup("fit")
    data = (probe.data_train.x, probe.data_train.y)
    n_batches = -(-data[0].shape[0] // BATCH) if args.steps is None else args.steps
    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(
        f"data: {source}; {data[0].shape[0]} training images, {n_batches} steps of batch {BATCH}; "
        f"{args.repeats} interleaved repeats after 1 untimed warm-up run per form"
    )

    def run(form: str) -> dict[str, float]:
        if form == "hand":
            return run_hand(data[0], data[1], device, args.steps)
        return run_lightning(form, root, data, device, args.steps)

    runs = run_interleaved(FORMS, run, args.repeats)
    ep = paired_summary({f: runs[f]["epoch_s"] for f in FORMS}, None, "hand")
    ft = paired_summary({f: runs[f]["fit_s"] for f in FORMS}, None, "hand")
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        [
            "form",
            "median epoch s",
            "x hand (median)",
            "fastest epoch s",
            "x hand (fastest)",
            "median fit s",
            "fit x hand",
        ],
        [
            [
                f,
                f"{ep[f]['median_s']:.3f}",
                f"{ep[f]['ratio_median']:.3f}",
                f"{ep[f]['fastest_s']:.3f}",
                f"{ep[f]['ratio_fastest']:.3f}",
                f"{ft[f]['median_s']:.3f}",
                f"{ft[f]['ratio_median']:.3f}",
            ]
            for f in FORMS
        ],
    )
    result = {
        "machine": info,
        "data": source,
        "args": {k: str(v) for k, v in vars(args).items()},
        "n_train": int(data[0].shape[0]),
        "steps": n_batches,
        "epoch": ep,
        "fit": ft,
        "ratios": {f: ep[f]["ratio_median"] for f in FORMS},
        "ratios_fastest": {f: ep[f]["ratio_fastest"] for f in FORMS},
        "target": "resident <= 1.10 x hand",
    }
    write_json(args, NAME, result)
    print(
        "ratio to hand-written loop (epoch, median / fastest): "
        + ", ".join(f"{f} {ep[f]['ratio_median']:.3f} / {ep[f]['ratio_fastest']:.3f}" for f in FORMS[1:])
    )
    return result


if __name__ == "__main__":
    main()
