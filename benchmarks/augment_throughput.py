"""Augmented training samples per second: per-sample cpu DataLoader path vs batched device path.

Same augmentation on both paths: Keras-style rotation 20 deg, shifts 0.2, horizontal flip (``keras_seed``).
The cpu path runs ``build_cpu_transform`` (torchvision v2, one image at a time) in DataLoader workers; the
device path runs ``augment_batch`` on whole batches drawn from tensors resident on the device, no
DataLoader. Both produce float batches ready for the model. One process; synthetic uint8 images of the
MNIST (1x28x28) and CIFAR (3x32x32) sizes.

    python benchmarks/augment_throughput.py [--quick] [--device cpu|cuda] [--workers 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader

from lightning_reg.augment import AugmentConfig, augment_batch, build_cpu_transform
from lightning_reg.augment.standardize import as_float_images
from lightning_reg.data.vision import ImageTensorDataset

CFG = dict(rotation_range=20.0, width_shift_range=0.2, height_shift_range=0.2, horizontal_flip=True)


def cpu_path(x: torch.Tensor, y: torch.Tensor, batch: int, workers: int, batches: int) -> float:
    cfg = AugmentConfig(augment_on="cpu", **CFG)
    ds = ImageTensorDataset(x, y, build_cpu_transform(cfg, x.shape[-2], x.shape[-1]))
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    seen, start = 0, time.perf_counter()
    for _ in range(batches):
        xb, _ = next(it)
        seen += xb.shape[0]
    return seen / (time.perf_counter() - start)


def device_path(x: torch.Tensor, batch: int, batches: int, device: torch.device) -> float:
    cfg = AugmentConfig(augment_on="device", **CFG)
    xd = x.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    perm = torch.randperm(xd.shape[0], device=device)
    augment_batch(as_float_images(xd[perm[:batch]]), cfg, gen)  # warm-up (kernels, allocator)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    sync()
    seen, start = 0, time.perf_counter()
    for b in range(batches):
        idx = perm[(b * batch) % (xd.shape[0] - batch):][:batch]
        out, _ = augment_batch(as_float_images(xd[idx]), cfg, gen)
        seen += out.shape[0]
    sync()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few batches (smoke test)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (the device path); the cpu path's 2 workers use "
                             "1 thread each, so 1 gives the device path fewer cores, not more")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path; the best one counts")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cpu_batches = 2 if args.quick else 20
    dev_batches = 4 if args.quick else 200
    n = args.batch * (cpu_batches + 2)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, cpus={os.cpu_count()}, device={device}, "
          f"batch={args.batch}, workers={args.workers}, augmentation={CFG}")
    ratios = []
    print(f"best of {1 if args.quick else args.repeats} interleaved runs per path")
    for name, shape in (("MNIST 1x28x28", (1, 28, 28)), ("CIFAR 3x32x32", (3, 32, 32))):
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        # Interleaved runs, best of each (timeit's rule): the machine is shared, so the best run is the one
        # least disturbed by other processes.
        cpu_runs, dev_runs = [], []
        for _ in range(1 if args.quick else args.repeats):
            cpu_runs.append(cpu_path(x, y, args.batch, args.workers, cpu_batches))
            dev_runs.append(device_path(x, args.batch, dev_batches, device))
        cpu, dev = max(cpu_runs), max(dev_runs)
        ratios.append(dev / cpu)
        print(f"{name}: cpu per-sample path {cpu:,.0f} samples/s | device batched path {dev:,.0f} samples/s "
              f"| ratio {dev / cpu:.1f}x")
    print(f"ratio device/cpu: MNIST {ratios[0]:.1f}x, CIFAR {ratios[1]:.1f}x")


if __name__ == "__main__":
    main()
