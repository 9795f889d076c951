"""The source material's CIFAR-10 CNN: one epoch on generated CIFAR-sized data, hand-written PyTorch vs lightning_reg.

The network is the source material's small Keras CNN, ``CNNClassifier()``: Conv32 -> pool -> Conv64 -> pool ->
Conv64 (3x3, ReLU) -> flatten -> Dropout 0.5 -> Dense 64 -> Dense 10, trained as its case study trains it: Adam
(lr 1e-3), batch 64, L2 1e-3 on every kernel. The data are generated (class templates plus noise, uint8) and
written as CIFAR-10's pickled batches, so the lightning_reg forms read them through ``CIFAR10DataModule`` and
torchvision's ``CIFAR10`` class, as a user's run would. There are no downloads.

Forms, in one process, interleaved (each repeat runs every form once, in a rotated order, on fresh models with
the same initial weights):

- ``hand``: a hand-written loop over the same ``nn.Sequential``: the training split as float tensors on the
  device, a ``randperm`` per epoch, index gathers, ``torch._foreach_add_`` for the L2 gradient (2e-3·w on the
  kernels), Adam. The epoch's loss and accuracy accumulate on the device. No DataLoader, no Lightning.
- ``resident``: ``CNNClassifier`` + ``CIFAR10DataModule(device_resident=True)`` + ``WeightPenalty(l2=1e-3)`` in a
  Lightning ``Trainer``.
- ``loader``: the same with the standard DataLoader path (``device_resident=False``, ``num_workers=0``).

Timed: the epoch, ``on_train_epoch_start`` to ``on_train_epoch_end`` (synchronized on CUDA), and the training
throughput in images per second. ``--precision bf16-mixed`` (or ``16-mixed`` on a GPU) runs every form under
autocast. Ratios are to ``hand``: the median of per-repeat ratios and the fastest epoch over the fastest hand
epoch. On a GPU the JSON records the GPU's name.

    python -m benchmarks.cifar_cnn [--quick] [--repeats 5] [--n-train 10000] [--device cuda] [--precision 32]
"""

from __future__ import annotations

import copy
import functools
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import (
    base_parser,
    describe,
    machine_info,
    paired_summary,
    print_table,
    quiet_lightning,
    run_interleaved,
    write_json,
)
from benchmarks.floor import EpochTimer, sync
from lightning_reg import CIFAR10DataModule, WeightPenalty
from lightning_reg.models import CNNClassifier

NAME = "cifar_cnn"
FORMS = ("hand", "resident", "loader")
L2, LR, BATCH = 1e-3, 1e-3, 64
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """CIFAR-10's on-disk layout (``cifar-10-batches-py``: five training batches, a test batch, the meta file)
    with generated uint8 images: a smooth template per class plus noise, so the network has something to learn."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, (10, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = -(-n_train // 5)
    sizes = [min(per_batch, n_train - i * per_batch) for i in range(5)] + [n_test]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, sizes):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] * 0.6 + rng.normal(0, 50, (n, 3, 32, 32)), 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": x.reshape(n, -1), "labels": y.tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES)}, f)
    return root


def build_model() -> CNNClassifier:
    torch.manual_seed(0)
    return CNNClassifier(optimizer=functools.partial(torch.optim.Adam, lr=LR))


def datamodule(root: Path, resident: bool) -> CIFAR10DataModule:
    return CIFAR10DataModule(
        data_dir=str(root), val_split=0.2, batch_size=BATCH, seed=0, device_resident=resident, check_integrity=False
    )


def autocast(device: torch.device, precision: str) -> Any:
    if precision == "32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)


def run_hand(
    x_u8: torch.Tensor, y: torch.Tensor, device: torch.device, steps: int | None, precision: str
) -> dict[str, float]:
    net = copy.deepcopy(build_model().net).to(device)  # the same layers and initial weights as the other forms
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    kernels = [m.weight for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    x = x_u8.to(device).float().div_(255)
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
        with autocast(device, precision):
            logits = net(xb)
        loss = F.cross_entropy(logits.float(), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch._foreach_add_([w.grad for w in kernels], kernels, alpha=2 * L2)
        scaler.step(opt)
        scaler.update()
        loss_sum += loss.detach() * yb.shape[0]
        correct += (logits.detach().argmax(1) == yb).sum()
    float(loss_sum), int(correct)  # the epoch's metrics, as Lightning's epoch-end logging syncs them
    sync(device)
    return {"epoch_s": time.perf_counter() - t0, "images": min(n, n_batches * BATCH)}


def run_lightning(
    form: str, root: Path, device: torch.device, steps: int | None, precision: str, n_train: int
) -> dict[str, float]:
    model = build_model()
    timer = EpochTimer(device)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        precision=precision,
        limit_train_batches=steps if steps is not None else 1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[WeightPenalty(l2=L2), timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule(root, resident=form == "resident"))
    sync(device)
    images = n_train if steps is None else min(n_train, steps * BATCH)
    return {"epoch_s": timer.seconds, "images": images}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of all forms")
    parser.add_argument("--n-train", type=int, default=10_000, help="generated images in the five training batches")
    parser.add_argument("--steps", type=int, default=None, help="limit the epoch to this many steps (default: all)")
    parser.add_argument("--precision", default="32", choices=("32", "bf16-mixed", "16-mixed"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.repeats, args.steps, args.n_train = 1, args.steps or 3, min(args.n_train, 1000)
    torch.set_num_threads(args.threads)
    quiet_lightning()
    device = torch.device(args.device)
    root = write_cifar10(Path(tempfile.mkdtemp(prefix="lightning_reg_cifar_")), args.n_train, n_test=1000)
    # The exact training split the DataModule uses, for the hand-written loop.
    probe = datamodule(root, resident=False)
    probe.setup("fit")
    x_train, y_train = probe.data_train.x, probe.data_train.y
    n = int(x_train.shape[0])
    n_batches = -(-n // BATCH) if args.steps is None else args.steps
    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(
        f"data: generated CIFAR-sized uint8 images in CIFAR-10's pickle format; {n} training images (80% of "
        f"{args.n_train}), {n_batches} steps of batch {BATCH}, precision {args.precision}; {args.repeats} "
        f"interleaved repeats after 1 untimed warm-up run per form"
    )

    def run(form: str) -> dict[str, float]:
        if form == "hand":
            return run_hand(x_train, y_train, device, args.steps, args.precision)
        return run_lightning(form, root, device, args.steps, args.precision, n)

    runs = run_interleaved(FORMS, run, args.repeats)
    images = int(runs["hand"]["images"][-1])
    ep = paired_summary({f: runs[f]["epoch_s"] for f in FORMS}, None, "hand")
    for form in FORMS:
        ep[form]["images_per_s"] = images / ep[form]["median_s"]
        ep[form]["step_ms"] = 1000 * ep[form]["median_s"] / n_batches
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        [
            "form",
            "median epoch s",
            "median step ms",
            "images/s",
            "x hand (median)",
            "fastest epoch s",
            "x hand (fastest)",
        ],
        [
            [
                f,
                f"{ep[f]['median_s']:.3f}",
                f"{ep[f]['step_ms']:.2f}",
                f"{ep[f]['images_per_s']:,.0f}",
                f"{ep[f]['ratio_median']:.3f}",
                f"{ep[f]['fastest_s']:.3f}",
                f"{ep[f]['ratio_fastest']:.3f}",
            ]
            for f in FORMS
        ],
    )
    result = {
        "machine": info,
        "data": f"generated CIFAR-sized data, {args.n_train} images",
        "args": {k: str(v) for k, v in vars(args).items()},
        "n_train": n,
        "steps": n_batches,
        "epoch": ep,
        "ratios": {f: ep[f]["ratio_median"] for f in FORMS},
        "ratios_fastest": {f: ep[f]["ratio_fastest"] for f in FORMS},
        "images_per_s": {f: ep[f]["images_per_s"] for f in FORMS},
    }
    write_json(args, NAME, result)
    print(
        "ratio to hand-written loop (epoch, median / fastest): "
        + ", ".join(f"{f} {ep[f]['ratio_median']:.3f} / {ep[f]['ratio_fastest']:.3f}" for f in FORMS[1:])
    )
    return result


if __name__ == "__main__":
    main()
