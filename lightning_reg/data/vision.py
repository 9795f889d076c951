"""Image DataModules over torchvision's dataset classes: MNIST, Fashion-MNIST, CIFAR-10 and image folders.

All share :class:`ImageDataModule`: images are read once into a uint8 tensor, split train/val (seeded,
stratified), standardized with statistics fitted on the training split, and augmented through
:class:`~lightning_reg.core.augment.AugmentationMixin` on the cpu or device path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import override

from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.cpu import build_train_transform
from lightning_reg.data.augment_mixin import AugmentationMixin
from lightning_reg.data.resident import DeviceResidentLoader
from lightning_reg.data.splits import check_folds, kfold_split, split_train_val, stratified_split
from lightning_reg.errors import ConfigError, check_bool, check_int

__all__ = [
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "ImageTensorDataset",
    "MNISTDataModule",
    "check_idx_file",
]


class ImageTensorDataset(TensorDataset):
    """``(image, label)`` pairs from in-memory tensors with an optional per-sample transform (cpu path).

    The type of every split (``data_train``, ``data_val``, ``data_test``) of the in-memory DataModules, the
    image sets here and :class:`~lightning_reg.data.DigitsDataModule`: ``x`` holds the split's images as
    stored, ``y`` its labels (``tensors`` holds both, as in ``TensorDataset``); indexing applies the transform.

    Example:
        >>> ds = ImageTensorDataset(torch.zeros(4, 1, 8, 8), torch.arange(4), transform=lambda img: img + 1)
        >>> len(ds), tuple(ds.x.shape), float(ds[2][0].max()), int(ds[2][1])
        (4, (4, 1, 8, 8), 1.0, 2)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Any = None) -> None:
        super().__init__(x, y)
        self.transform = transform

    @property
    def x(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        return self.tensors[1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        if self.transform is not None:
            img = self.transform(img)
        return img, self.y[i]


def check_idx_file(path: Path, header: int, per_item: int | None) -> None:
    """Raise :class:`ConfigError` naming ``path`` when it is not a complete IDX file (MNIST's format).

    An IDX file is a magic number (two zero bytes, a type byte, the number of dimensions), one big-endian
    uint32 per dimension, then the uint8 data; its size must be exactly the header plus the product of the
    dimensions.
    """
    import math as _math
    import struct

    data = path.read_bytes()[:header] if path.is_file() else b""
    size = path.stat().st_size if path.is_file() else 0
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ConfigError(
            f"{path} is not an IDX file of unsigned bytes (MNIST's format): its first bytes are "
            f"{data[:4]!r}, expected b'\\x00\\x00\\x08' and a dimension count."
        )
    ndim = data[3]
    if size < 4 + 4 * ndim:
        raise ConfigError(f"{path} is truncated: {size} bytes, shorter than its own header.")
    with path.open("rb") as fh:
        fh.seek(4)
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
    expected = 4 + 4 * ndim + _math.prod(dims)
    if size != expected:
        raise ConfigError(
            f"{path} is {'truncated' if size < expected else 'longer than its header says'}: "
            f"{size} bytes, expected {expected} for dimensions {list(dims)}. Replace the file "
            "(or pass download=true to fetch MNIST again)."
        )


class ImageDataModule(AugmentationMixin, pl.LightningDataModule):
    """Base for the image DataModules; subclasses say where the files are and how to read them.

    Args:
        data_dir: root folder of the data set (torchvision's layout).
        download: let torchvision download the data set when it is missing (off by default).
        val_split: validation share of the training files: a fraction in (0, 1) or a count.
        batch_size, num_workers: DataLoader settings (``num_workers`` also runs the cpu-path transforms).
        seed: seeds the split and the device-path augmentation stream (plus the global rank).
        normalize: per-channel mean/std from the training split (or ``mean``/``std`` when given).
        mean, std: per-channel statistics to use instead of fitted ones.
        augment: the augmentation block (:class:`~lightning_reg.core.augment.AugmentConfig` or a mapping).
        device_resident: keep the splits on the training device and draw batches without a DataLoader
            (needs ``augment_on="device"``; for small data sets).
        train_subset: keep only this many training images (stratified), for quick runs.
        drop_last: drop the last incomplete training batch.
        fold, num_folds: k-fold cross-validation of the training files: ``num_folds`` stratified, seeded
            folds, fold ``fold`` validates and the rest train (``val_split`` is then not used). The test
            files are untouched. Both ``None`` (the default): the ``val_split`` split.

    Example:
        >>> class Tiny(ImageDataModule):  # images in memory instead of files
        ...     def expected_files(self):
        ...         return []
        ...     def load_split(self, train):
        ...         n = 20 if train else 6
        ...         return torch.zeros(n, 1, 28, 28, dtype=torch.uint8), torch.arange(n) % 2
        >>> dm = Tiny(data_dir="unused", val_split=4)
        >>> dm.setup("fit")
        >>> len(dm.data_train), sorted(dm.data_val.y.tolist()), len(dm.data_test)  # a stratified split
        (16, [0, 0, 1, 1], 6)
    """

    num_classes: int = 10
    input_shape: tuple[int, int, int] = (1, 28, 28)

    def __init__(
        self,
        data_dir: str | None = None,
        download: bool = False,
        val_split: float | int = 0.1,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        normalize: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        device_resident: bool = False,
        train_subset: int | None = None,
        drop_last: bool = False,
        fold: int | None = None,
        num_folds: int | None = None,
    ) -> None:
        super().__init__()
        self.folds = check_folds(fold, num_folds)
        if data_dir is None or str(data_dir).strip() == "":
            raise ConfigError(
                f"`data_dir` must name the folder holding {type(self).__name__}'s files; got {data_dir!r}."
            )
        check_int("batch_size", batch_size, low=1)
        check_int("num_workers", num_workers, low=0)
        check_int("seed", seed)
        if train_subset is not None:
            check_int("train_subset", train_subset, low=2)
        if (
            isinstance(val_split, bool)
            or not isinstance(val_split, (int, float))
            or val_split <= 0
            or (isinstance(val_split, float) and val_split >= 1.0)
        ):
            raise ConfigError(
                f"`val_split` must be a fraction in (0, 1) (a float) or a positive count of images (an "
                f"int); got {val_split!r}."
            )
        self.data_dir = Path(data_dir).expanduser()
        self.download = check_bool("download", download)
        self.val_split = val_split
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.normalize = check_bool("normalize", normalize)
        self.mean, self.std = (list(mean) if mean is not None else None), (list(std) if std is not None else None)
        self.device_resident = check_bool("device_resident", device_resident)
        self.train_subset = train_subset
        self.drop_last = check_bool("drop_last", drop_last)
        self.configure_augmentation(augment, num_classes=self.num_classes, seed=seed)
        cfg = self.augment_config
        if self.device_resident and cfg.augment_on != "device":
            raise ConfigError(
                "`device_resident=true` draws batches on the device; it needs "
                f"`augment.augment_on='device'`, got {cfg.augment_on!r}."
            )
        if cfg.mix_mode == "pair" and cfg.has_mixing and batch_size % 2:
            raise ConfigError(f"`augment.mix_mode='pair'` needs an even `batch_size`; got {batch_size}.")
        if not self.download:
            self.check_files()
        self.data_train: ImageTensorDataset | None = None
        self.data_val: ImageTensorDataset | None = None
        self.data_test: ImageTensorDataset | None = None
        self._standardizer_loaded = False

    # --- what subclasses provide -------------------------------------------------------------------
    def expected_files(self) -> list[Path]:
        """Files that must exist for ``download=False``."""
        raise NotImplementedError

    def load_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(uint8 images (N, C, H, W), int64 labels (N,))`` for the train or test files."""
        raise NotImplementedError

    def torchvision_download(self) -> None:
        """Download through the torchvision dataset class."""
        raise NotImplementedError

    # --- shared logic ------------------------------------------------------------------------------
    def check_files(self) -> None:
        """Raise :class:`ConfigError` naming the expected path and the download flag when files are missing."""
        missing = [p for p in self.expected_files() if not p.exists()]
        if missing:
            raise ConfigError(
                f"{type(self).__name__}: data set not found: expected {missing[0]} "
                f"({len(missing)} of {len(self.expected_files())} expected files missing under data_dir="
                f"{str(self.data_dir)!r}). Point `data_dir` at the folder that holds it, or pass `download=true` "
                "(Hydra: `data.download=true`) to let torchvision download it."
            )

    @override
    def prepare_data(self) -> None:
        if self.download:
            self.torchvision_download()

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.data_train is None:
            self.check_files()
            x, y = self.load_split(train=True)
            if self.folds is not None:
                tr, va = kfold_split(y, self.folds[1], self.folds[0], self.seed)
            else:
                tr, va = split_train_val(y, self.val_split, self.seed)
            if self.train_subset is not None:
                if self.train_subset >= len(tr):
                    raise ConfigError(
                        f"`train_subset` must be below the training split size {len(tr)}; got {self.train_subset}."
                    )
                tr = tr[stratified_split(y[tr], [self.train_subset, len(tr) - self.train_subset], self.seed)[0]]
            self.data_train = ImageTensorDataset(x[tr], y[tr])
            self.data_val = ImageTensorDataset(x[va], y[va])
            self.data_test = ImageTensorDataset(*self.load_split(train=False))
            cfg = self.augment_config
            if not self._standardizer_loaded and (cfg.has_standardization or self.normalize or self.mean or self.std):
                self.fit_standardization(self.data_train.x, self.mean, self.std, normalize=self.normalize)
        self.check_soft_targets()
        cfg = self.augment_config
        if cfg.mix_mode == "pair" and cfg.has_mixing and not self.drop_last:
            rest = len(self.data_train) % self.batch_size
            if rest % 2:
                raise ConfigError(
                    f"`augment.mix_mode='pair'` needs even batches, but the last training batch has "
                    f"{rest} images; set `drop_last=true`."
                )

    def _world(self) -> tuple[int, int, torch.device]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1, torch.device("cpu")
        return trainer.global_rank, trainer.world_size, trainer.strategy.root_device

    def _loader(self, data: ImageTensorDataset | None, train: bool) -> Any:
        if data is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader.")
        x, y = data.x, data.y
        if self.device_resident:
            rank, world, device = self._world()
            trainer = self.trainer
            epoch_fn = (lambda: trainer.current_epoch) if trainer is not None else None
            return DeviceResidentLoader(
                x.to(device),
                y.to(device),
                self.batch_size,
                shuffle=train,
                drop_last=self.drop_last and train,
                seed=self.seed,
                rank=rank,
                world_size=world,
                epoch_fn=epoch_fn,
            )
        transform = None
        if train and self.augment_config.augment_on == "cpu" and not self.augment_config.is_identity:
            transform = build_train_transform(self.augment_config, x.shape[-2], x.shape[-1])
        return DataLoader(
            ImageTensorDataset(x, y, transform),
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=self.drop_last and train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> Any:
        return self._loader(self.data_train, train=True)

    @override
    def val_dataloader(self) -> Any:
        return self._loader(self.data_val, train=False)

    @override
    def test_dataloader(self) -> Any:
        return self._loader(self.data_test, train=False)


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
