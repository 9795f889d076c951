"""Tiny data sets in the real on-disk formats (MNIST IDX, CIFAR-10 pickled batches, image folders).

Images are learnable: class ``c`` draws a bright square at a class-specific position on noise, so a short
training run can beat chance. Everything is generated from a seed into ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import torch


def class_images(n: int, channels: int, size: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(n, size, size, channels)`` uint8 images and labels; every class appears (n >= classes)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=g)]
    x = (torch.rand(n, size, size, channels, generator=g) * 60).to(torch.uint8)
    cell = size // 4
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c % 16, 4)
        x[i, r * cell : (r + 1) * cell, q * cell : (q + 1) * cell, :] = 220
    return x.numpy(), labels.numpy().astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 IDX file (MNIST's format): magic 0x0803/0x0801, big-endian sizes, raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 200, n_test: int = 60, size: int = 28, seed: int = 0
) -> Path:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, readable by torchvision's MNIST."""
    raw = root / folder / "raw"
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = class_images(n, 1, size, seed=s)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x[..., 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


def make_cifar10(root: Path, per_batch: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` in CIFAR's pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        x, y = class_images(n_test if name == "test_batch" else per_batch, 3, 32, seed=seed + k)
        data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # CIFAR rows: R plane, G plane, B plane
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": y.astype(int).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
        )
    return root


def make_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("cat", "dog", "fox"),
    per_class: int = 12,
    size: tuple[int, int] = (20, 16),
    test: bool = True,
    seed: int = 0,
) -> Path:
    """``<root>/{train,test}/<class>/<i>.png`` RGB images of different sizes' worth of content."""
    from PIL import Image

    for split, n in (("train", per_class), ("test", max(per_class // 3, 2))) if test else (("train", per_class),):
        x, _ = class_images(n * len(classes), 3, max(size), classes=len(classes), seed=seed)
        idx = 0
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.full((max(size), max(size), 3), 30, np.uint8)
                img[:, :, c % 3] = x[idx, :, :, 0]
                Image.fromarray(img[: size[0], : size[1]]).save(d / f"{i}.png")
                idx += 1
    return root
