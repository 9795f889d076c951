"""The image DataModules over torchvision's dataset classes: MNIST, Fashion-MNIST, CIFAR-10 and image folders.

Each is an :class:`~lightning_reg.data.vision.ImageDataModule` that knows how to read its files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from typing_extensions import override

from lightning_reg.data.vision import ImageDataModule, check_idx_file
from lightning_reg.errors import ConfigError, check_bool

__all__ = ["CIFAR10DataModule", "FashionMNISTDataModule", "ImageFolderDataModule", "MNISTDataModule"]


class MNISTDataModule(ImageDataModule):
    """MNIST through ``torchvision.datasets.MNIST`` (files under ``<data_dir>/MNIST/raw``), ``1x28x28``.

    Example:
        >>> dm = MNISTDataModule(data_dir="/work/shared/data", val_split=0.1,
        ...                      augment={"rotation_range": 20, "horizontal_flip": True})  # doctest: +SKIP
        >>> dm.setup("fit")  # doctest: +SKIP
    """

    num_classes = 10
    input_shape = (1, 28, 28)
    folder = "MNIST"
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def _dataset_class(self) -> Any:
        from torchvision.datasets import MNIST

        return MNIST

    @override
    def expected_files(self) -> list[Path]:
        return [self.data_dir / self.folder / "raw" / f for f in self.files]

    @override
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        prefix = "train" if train else "t10k"
        for kind, header, per_item in (("images-idx3", 16, None), ("labels-idx1", 8, 1)):
            check_idx_file(self.data_dir / self.folder / "raw" / f"{prefix}-{kind}-ubyte", header, per_item)
        ds = self._dataset_class()(str(self.data_dir), train=train, download=False)
        return ds.data.unsqueeze(1).contiguous(), ds.targets.long()

    @override
    def torchvision_download(self) -> None:
        for train in (True, False):
            self._dataset_class()(str(self.data_dir), train=train, download=True)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST through ``torchvision.datasets.FashionMNIST`` (``<data_dir>/FashionMNIST/raw``), ``1x28x28``.

    Example:
        >>> dm = FashionMNISTDataModule(data_dir="data", augment={"horizontal_flip": True})  # doctest: +SKIP
    """

    folder = "FashionMNIST"

    @override
    def _dataset_class(self) -> Any:
        from torchvision.datasets import FashionMNIST

        return FashionMNIST


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (``<data_dir>/cifar-10-batches-py``), ``3x32x32``.

    Args:
        check_integrity: verify torchvision's MD5 sums of the batch files (on by default). CIFAR-10's batch
            files are Python pickles, and reading one runs whatever it holds: ``check_integrity=false`` trusts
            the files, so turn it off only for files you made yourself (re-packed or generated ones).
        **kwargs: the :class:`ImageDataModule` options.

    Example:
        >>> dm = CIFAR10DataModule(data_dir="data", normalize=True,
        ...                        augment={"crop_padding": 4, "horizontal_flip": True})  # doctest: +SKIP
    """

    num_classes = 10
    input_shape = (3, 32, 32)
    files = (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    )

    def __init__(self, *args: Any, check_integrity: bool = True, **kwargs: Any) -> None:
        self.check_integrity = check_bool("check_integrity", check_integrity)
        super().__init__(*args, **kwargs)

    def _dataset(self, train: bool, download: bool) -> Any:
        from torchvision.datasets import CIFAR10

        cls = CIFAR10
        if not self.check_integrity:

            class _Unchecked(CIFAR10):
                def _check_integrity(self) -> bool:
                    return all(
                        (Path(self.root) / self.base_folder / f).is_file() for f, _ in self.train_list + self.test_list
                    )

                def _load_meta(self) -> None:
                    import pickle

                    with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                        self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
                    self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

            cls = _Unchecked
        try:
            return cls(str(self.data_dir), train=train, download=download)
        except RuntimeError as err:
            raise ConfigError(
                f"CIFAR10DataModule: {err} (data_dir={str(self.data_dir)!r}; files that do not match "
                "torchvision's MD5 sums can be read with `check_integrity=false`)."
            ) from None

    @override
    def expected_files(self) -> list[Path]:
        return [self.data_dir / "cifar-10-batches-py" / f for f in self.files]

    @override
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        ds = self._dataset(train, download=False)
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long)

    @override
    def torchvision_download(self) -> None:
        self._dataset(True, download=True)


class ImageFolderDataModule(ImageDataModule):
    """A user's images in class folders (``<data_dir>/train/<class>/*.png``), read by
    ``torchvision.datasets.ImageFolder`` into memory, resized to ``image_size``.

    ``<data_dir>/test`` is the test split when present (otherwise the validation split is reused for
    testing); validation comes from ``val_split`` of ``train``. Meant for small sets that fit in memory.

    Args:
        image_size: ``[height, width]`` to resize to; ``None`` keeps the first image's size (all must match).
        grayscale: read as one channel instead of RGB.
        train_dir, test_dir: sub-folder names.
        **kwargs: the :class:`ImageDataModule` options (``download`` is not supported).

    Example:
        >>> dm = ImageFolderDataModule(data_dir="my_images", image_size=[64, 64],
        ...                            augment={"rotation_range": 10})  # doctest: +SKIP
    """

    def __init__(
        self,
        *args: Any,
        image_size: Sequence[int] | None = None,
        grayscale: bool = False,
        train_dir: str = "train",
        test_dir: str = "test",
        **kwargs: Any,
    ) -> None:
        if kwargs.get("download"):
            raise ConfigError("ImageFolderDataModule reads your own images; `download` must be false.")
        if image_size is not None and (len(image_size) != 2 or any(int(s) < 1 for s in image_size)):
            raise ConfigError(f"`image_size` must be [height, width] with positive sizes; got {list(image_size)}.")
        self.image_size: tuple[int, int] | None = (
            (int(image_size[0]), int(image_size[1])) if image_size is not None else None
        )
        self.grayscale = check_bool("grayscale", grayscale)
        self.train_dir, self.test_dir = train_dir, test_dir
        data_dir = kwargs.get("data_dir", args[0] if args else None)
        root = Path(data_dir).expanduser() / train_dir if data_dir else None
        classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root is not None and root.is_dir() else []
        self.classes = classes
        if root is not None and root.is_dir() and len(classes) < 2:
            raise ConfigError(f"ImageFolderDataModule needs at least 2 class folders under {root}; found {classes}.")
        # Instance attributes, known before setup: train.py sizes the model from them.
        self.num_classes = max(len(classes), 2)
        channels = 1 if self.grayscale else 3
        if self.image_size is None and classes and root is not None:
            self.image_size = self._first_size(root)
        height, width = self.image_size or (0, 0)
        self.input_shape = (channels, height, width)
        super().__init__(*args, **kwargs)

    @staticmethod
    def _first_size(root: Path) -> tuple[int, int]:
        from PIL import Image

        for path in sorted(root.rglob("*")):
            if path.is_file():
                try:
                    with Image.open(path) as img:
                        return img.height, img.width
                except OSError:
                    continue
        raise ConfigError(f"ImageFolderDataModule found no readable image under {root}.")

    @override
    def expected_files(self) -> list[Path]:
        return [self.data_dir / self.train_dir]

    @override
    def check_files(self) -> None:
        root = self.data_dir / self.train_dir
        if not root.is_dir():
            raise ConfigError(
                f"ImageFolderDataModule: expected image class folders under {root} (<data_dir>/{self.train_dir}/"
                f"<class>/*.png); data_dir={str(self.data_dir)!r} has none. There is nothing to download: point "
                "`data_dir` at your images."
            )

    def _read(self, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import v2

        tf = [v2.PILToTensor()]
        if self.grayscale:
            tf.insert(0, v2.Grayscale(1))
        else:
            tf.insert(0, v2.RGB())
        if self.image_size is None:  # no class folders when constructed: size from the first image now
            self.image_size = self._first_size(folder)
        tf.append(v2.Resize(list(self.image_size), antialias=True))
        ds = ImageFolder(str(folder), transform=v2.Compose(tf))
        if ds.classes != self.classes:
            raise ConfigError(
                f"class folders under {folder} ({ds.classes}) differ from those under train ({self.classes})."
            )
        items = []
        for i in range(len(ds)):
            try:
                items.append(ds[i])
            except (OSError, ValueError, SyntaxError) as err:  # PIL: truncated or not an image
                raise ConfigError(
                    f"ImageFolderDataModule: {ds.samples[i][0]} is not a readable image "
                    f"({type(err).__name__}: {err}). Remove or replace the file."
                ) from None
        xs, ys = zip(*items)
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long)

    @override
    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if train:
            return self._read(self.data_dir / self.train_dir)
        test = self.data_dir / self.test_dir
        if test.is_dir():
            return self._read(test)
        if self.data_val is not None:
            return self.data_val.x, self.data_val.y
        return self._read(self.data_dir / self.train_dir)

    @override
    def torchvision_download(self) -> None:
        raise ConfigError("ImageFolderDataModule reads your own images; `download` must be false.")
