"""Augmented training samples per second: per-sample cpu DataLoader path vs batched device path, per preset.

Presets, read from ``conf/augment/`` exactly as ``augment=<name>`` composes them:

- ``keras_seed``: rotation 20 deg, shifts 0.2, horizontal flip (Keras' ImageDataGenerator seed setting);
- ``randaugment``: torchvision RandAugment (2 ops, magnitude 9); ``trivialaugment``: TrivialAugmentWide. On the
  device path both run batched with a draw per sample (``core/augment/policies.py``: one torchvision call per
  (op, magnitude) present in the batch, on uint8 images as on the cpu path);
- ``mixup``: MixUp (alpha 0.2, a lambda per sample). There is no per-sample part: on the cpu path the
  DataLoader only collates, and MixUp runs batched after transfer on both paths.

Both paths produce what a training step receives, through the same code the DataModules run:

- **cpu path**: ``ImageTensorDataset`` + ``build_cpu_transform`` (torchvision v2, one image at a time) in a
  DataLoader with ``--workers`` workers, then the after-transfer part of ``AugmentationMixin`` (float
  conversion, standardization, mixers) on the device.
- **device path**: index gathers from uint8 tensors resident on the device, no DataLoader, then
  ``AugmentationMixin.augment_training_batch`` (the batched geometry, one draw per sample, then the mixers).

Images: the MNIST subset's training images when ``--data-dir`` holds them (generated uint8 images otherwise)
for 1x28x28, and generated uint8 images for 3x32x32 (CIFAR-sized). Each figure is the best of ``--repeats``
interleaved runs (timeit's rule: contention only slows a run down), with the median beside it.

    python -m benchmarks.augment_throughput [--quick] [--device cpu|cuda] [--workers 2] [--batch 256]
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python benchmarks/augment_throughput.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from benchmarks.common import (
    base_parser,
    describe,
    machine_info,
    mnist_root,
    print_table,
    quiet_lightning,
    write_json,  # noqa: E402
)
from lightning_reg.core.augment import AugmentConfig, build_cpu_transform  # noqa: E402
from lightning_reg.core.augment.config import DEVICE_POLICIES  # noqa: E402
from lightning_reg.data import with_augmentation  # noqa: E402
from lightning_reg.data.datasets import MNISTDataModule  # noqa: E402
from lightning_reg.data.vision import ImageTensorDataset  # noqa: E402

NAME = "augment_throughput"
PRESETS = ("keras_seed", "randaugment", "trivialaugment", "augmix", "mixup")


def load_preset(name: str) -> dict[str, Any]:
    """The ``data.augment`` block that ``augment=<name>`` composes (defaults list included)."""
    from hydra import compose, initialize_config_dir

    from lightning_reg.app.train import CONF_DIR

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"augment={name}"])
    return OmegaConf.to_container(cfg.data.augment, resolve=True)  # type: ignore[return-value]


def augmenter(preset: dict[str, Any], on: str) -> pl.LightningDataModule:
    return with_augmentation(pl.LightningDataModule(), {**preset, "augment_on": on}, num_classes=10, seed=0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_path(
    preset: dict[str, Any],
    x: torch.Tensor,
    y: torch.Tensor,
    batch: int,
    workers: int,
    batches: int,
    device: torch.device,
) -> float:
    dm = augmenter(preset, "cpu")
    cfg: AugmentConfig = dm.augment_config
    transform = None if cfg.is_identity else build_cpu_transform(cfg, x.shape[-2], x.shape[-1])
    loader = DataLoader(
        ImageTensorDataset(x, y, transform),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    xb, yb = next(it)  # worker start-up is not throughput
    dm.augment_training_batch(xb.to(device), yb.to(device))
    sync(device)
    seen, start = 0, time.perf_counter()
    for _ in range(batches):
        xb, yb = next(it)
        out, _ = dm.augment_training_batch(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True))
        seen += out.shape[0]
    sync(device)
    return seen / (time.perf_counter() - start)


def device_path(
    preset: dict[str, Any], x: torch.Tensor, y: torch.Tensor, batch: int, batches: int, device: torch.device
) -> float:
    dm = augmenter(preset, "device")
    xd, yd = x.to(device), y.to(device)
    perm = torch.randperm(xd.shape[0], device=device)
    dm.augment_training_batch(xd[perm[:batch]], yd[perm[:batch]])  # warm-up (kernels, allocator)
    sync(device)
    seen, start = 0, time.perf_counter()
    for b in range(batches):
        idx = perm[(b * batch) % (xd.shape[0] - batch) :][:batch]
        out, _ = dm.augment_training_batch(xd[idx], yd[idx])
        seen += out.shape[0]
    sync(device)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the cpu path")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed runs per path; the best counts")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--cpu-batches", type=int, default=None, help="timed batches per cpu-path run (default 20)")
    parser.add_argument("--device-batches", type=int, default=None, help="timed batches per device-path run (200)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    device = torch.device(args.device)
    # --threads: the main process (the device path); the cpu path's workers use 1 thread each, so the
    # default 1 gives the device path fewer cores than the 2 workers, not more.
    torch.set_num_threads(args.threads)
    quiet_lightning()
    cpu_batches = args.cpu_batches or (2 if args.quick else 20)
    dev_batches = args.device_batches or (4 if args.quick else 200)
    repeats = 1 if args.quick else args.repeats
    n = args.batch * (cpu_batches + 2)
    root, source = mnist_root(args.data_dir)
    info = machine_info(args.device)
    print(f"{NAME}: {describe(info)}")
    print(
        f"batch {args.batch}, cpu path with {args.workers} workers, best of {repeats} interleaved runs; "
        f"1x28x28: {source}; 3x32x32: generated"
    )

    dm = MNISTDataModule(data_dir=str(root), val_split=0.1, seed=0)
    dm.setup("fit")
    mx, my = dm.data_train.x, dm.data_train.y
    reps = -(-n // mx.shape[0])
    g = torch.Generator().manual_seed(0)
    shapes = {
        "MNIST 1x28x28": (mx.repeat(reps, 1, 1, 1)[:n].contiguous(), my.repeat(reps)[:n].contiguous()),
        "CIFAR 3x32x32": (
            torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
        ),
    }
    rows, results = [], []
    for preset_name in args.presets:
        preset = load_preset(preset_name)
        has_device = not preset.get("policy") or preset["policy"] in DEVICE_POLICIES
        for shape_name, (x, y) in shapes.items():
            cpu_runs, dev_runs = [], []
            for _ in range(repeats):
                cpu_runs.append(cpu_path(preset, x, y, args.batch, args.workers, cpu_batches, device))
                if has_device:
                    dev_runs.append(device_path(preset, x, y, args.batch, dev_batches, device))
            cpu = max(cpu_runs)
            dev = max(dev_runs) if dev_runs else None
            rec = {
                "preset": preset_name,
                "shape": shape_name,
                "cpu_best": cpu,
                "cpu_median": statistics.median(cpu_runs),
                "device_best": dev,
                "device_median": statistics.median(dev_runs) if dev_runs else None,
                "ratio": dev / cpu if dev else None,
                "cpu_runs": cpu_runs,
                "device_runs": dev_runs,
                "note": "" if has_device else "policy: cpu path only (no device implementation)",
            }
            results.append(rec)
            rows.append(
                [
                    preset_name,
                    shape_name,
                    f"{cpu:,.0f}",
                    f"{rec['cpu_median']:,.0f}",
                    f"{dev:,.0f}" if dev else "n/a",
                    f"{rec['device_median']:,.0f}" if dev else "n/a",
                    f"{rec['ratio']:.1f}x" if dev else "n/a (cpu path only)",
                ]
            )
            print(
                f"{preset_name} {shape_name}: cpu {cpu:,.0f}/s, device " + (f"{dev:,.0f}/s" if dev else "n/a"),
                flush=True,
            )
    info["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print()
    print_table(
        [
            "preset",
            "images",
            "cpu path best /s",
            "cpu median /s",
            "device path best /s",
            "device median /s",
            "device / cpu",
        ],
        rows,
    )
    write_json(
        args,
        NAME,
        {
            "machine": info,
            "data": source,
            "args": {k: str(v) for k, v in vars(args).items()},
            "results": results,
            "target": "device >= 10 x cpu on the CPU",
        },
    )

    def fmt(shape: str) -> str:
        return ", ".join(
            f"{r['preset']} " + (f"{r['ratio']:.1f}x" if r["ratio"] else "n/a (cpu path only)")
            for r in results
            if r["shape"] == shape
        )

    print(f"ratio device/cpu: MNIST {fmt('MNIST 1x28x28')} | CIFAR {fmt('CIFAR 3x32x32')}")
    return {"results": results}


if __name__ == "__main__":
    main()
