"""The base of the image DataModules (:mod:`lightning_reg.data.datasets`: MNIST, Fashion-MNIST, CIFAR-10, folders).

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

__all__ = ["ImageDataModule", "ImageTensorDataset", "check_idx_file"]


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
