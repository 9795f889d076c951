"""Lightning glue: :class:`AugmentationMixin` adds the augmentation config block to any LightningDataModule.

The pure functions live in ``geometric.py``, ``color.py``, ``erasing.py``, ``mixing.py`` and
``standardize.py``; this file only decides when to call them: in ``on_after_batch_transfer``, for
training batches only (augmentation, mixers) or for every split (standardization).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import lightning.pytorch as pl
import torch
from typing_extensions import override

from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.device import augment_batch
from lightning_reg.core.augment.featurewise import Standardizer, as_float_images, fit_standardizer
from lightning_reg.core.augment.jsd import JSDConsistency
from lightning_reg.core.augment.mixers import mix_batch, smooth_labels
from lightning_reg.errors import ConfigError, check_int

if TYPE_CHECKING:  # the mixin always sits before a LightningDataModule in the bases: type it as one
    _DataModuleBase = pl.LightningDataModule
else:
    _DataModuleBase = object

__all__ = [
    "AugmentationMixin",
    "check_jsd_precision",
    "check_soft_targets",
    "require_soft_targets",
    "with_augmentation",
]

# Distinct, fixed stream per rank: rank r draws from seed + RANK_STRIDE * r.
RANK_STRIDE = 1_000_003


def check_soft_targets(module: Any, cfg: AugmentConfig) -> None:
    """Raise :class:`ConfigError` when MixUp/CutMix or label smoothing is on and ``module`` does not declare
    soft-target support.

    A LightningModule opts in with the class attribute ``accepts_soft_targets = True`` (the reference
    models do). We inspect the attribute instead of probing the loss: a loss that silently broadcasts or
    argmaxes ``(N, C)`` targets would pass a probe and still train wrongly.

    Example:
        >>> check_soft_targets(object(), AugmentConfig())  # no mixer: nothing to check
    """
    if not cfg.has_soft_targets or module is None:
        return
    options = [
        f"`augment.{name}`"
        for name, on in (
            ("mixup_alpha", cfg.mixup_alpha > 0),
            ("cutmix_alpha", cfg.cutmix_alpha > 0),
            ("label_smoothing", cfg.label_smoothing > 0),
        )
        if on
    ]
    require_soft_targets(module, "/".join(options), "or turn them off")


def require_soft_targets(module: Any, option: str, alternative: str) -> None:
    """Raise :class:`ConfigError` naming ``option`` unless ``module`` declares ``accepts_soft_targets = True``.

    Example:
        >>> require_soft_targets(object(), "`smoothing`", "or remove the callback")
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `smoothing` produce(s) soft (N, num_classes) float targets, but object does not declare `accepts_soft_targets = True`. Make its loss accept probability targets (F.cross_entropy does) and set that class attribute, or remove the callback.
    """
    if not getattr(module, "accepts_soft_targets", False):
        raise ConfigError(
            f"{option} produce(s) soft (N, num_classes) float targets, but {type(module).__name__} does not "
            "declare `accepts_soft_targets = True`. Make its loss accept probability targets (F.cross_entropy "
            f"does) and set that class attribute, {alternative}."
        )


def check_jsd_precision(precision: str) -> None:
    """The JSD gradient is added unscaled: refuse the GradScaler's ``16-mixed`` (bf16 and 32 are fine).

    Example:
        >>> check_jsd_precision("bf16-mixed")
    """
    if precision.startswith("16"):
        raise ConfigError(
            f"the AugMix JSD term adds its gradient unscaled, which a GradScaler's precision would mis-scale; use "
            f"`precision` 'bf16-mixed' or '32-true'; got {precision!r}."
        )


class AugmentationMixin(_DataModuleBase):
    """Adds our augmentation to a LightningDataModule: put it first in the bases and call
    :meth:`configure_augmentation` from ``__init__``.

    Training batches get the device-path augmentation (when ``augment_on="device"``), every split gets the
    fitted standardization, and training batches get MixUp/CutMix, all in ``on_after_batch_transfer``
    (after the user's own ``on_after_batch_transfer``, if any). The random stream is a ``torch.Generator``
    on the batch's device, seeded by ``seed`` and the global rank, and saved in the DataModule's state.

    Example:
        >>> import lightning.pytorch as pl
        >>> class MyData(pl.LightningDataModule):  # the user's existing DataModule
        ...     pass
        >>> class MyAugmentedData(AugmentationMixin, MyData):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.configure_augmentation({"rotation_range": 15, "horizontal_flip": True}, num_classes=10)
        >>> dm = MyAugmentedData()
        >>> x, y = dm.augment_training_batch(torch.rand(4, 1, 8, 8), torch.arange(4))
        >>> x.shape
        torch.Size([4, 1, 8, 8])
    """

    def configure_augmentation(
        self,
        augment: AugmentConfig | Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        seed: int = 0,
        standardizer: Standardizer | None = None,
    ) -> None:
        """Validate and store the augmentation config (raises :class:`ConfigError` on bad values)."""
        self.augment_config = AugmentConfig.from_any(augment)
        if self.augment_config.has_soft_targets:
            if num_classes is None:
                raise ConfigError(
                    "`num_classes` is required for the soft targets of MixUp/CutMix/label_smoothing; got None."
                )
            check_int("num_classes", num_classes, low=2)
        self.augment_num_classes = num_classes
        self.augment_seed = check_int("seed", seed)
        self.standardizer = standardizer or Standardizer()
        self._augment_generator: torch.Generator | None = None
        self._augment_generator_state: torch.Tensor | None = None
        self._soft_targets_checked = False
        self._jsd: JSDConsistency | None = None

    def fit_standardization(
        self, x_train: torch.Tensor, mean: Any = None, std: Any = None, normalize: bool = False
    ) -> Standardizer:
        """Fit featurewise centre/std, ZCA (from the config) and ``normalize`` on training images, once."""
        cfg = self._aug_cfg()
        self.standardizer = fit_standardizer(
            x_train,
            center=cfg.featurewise_center or normalize,
            std_normalization=cfg.featurewise_std_normalization or normalize,
            zca=cfg.zca_whitening,
            zca_epsilon=cfg.zca_epsilon,
            zca_formula=cfg.zca_formula,
            zca_pixel_mean=cfg.zca_pixel_mean,
            mean=mean,
            std=std,
        )
        return self.standardizer

    def _aug_cfg(self) -> AugmentConfig:
        cfg = getattr(self, "augment_config", None)
        if cfg is None:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call configure_augmentation(...) first.")
        return cfg

    def augment_generator(self, device: torch.device) -> torch.Generator:
        """The device-path random stream, created on first use on ``device`` and seeded by seed and rank."""
        gen = self._augment_generator
        if gen is None or gen.device != device:
            trainer = getattr(self, "trainer", None)
            rank = trainer.global_rank if trainer is not None else 0
            gen = torch.Generator(device=device).manual_seed(self.augment_seed + RANK_STRIDE * rank)
            state = self._augment_generator_state
            if state is not None:
                gen.set_state(state)
            self._augment_generator = gen
            self._augment_generator_state = None
        return gen

    def check_soft_targets(self) -> None:
        """Fail before training when the mixers or label smoothing are on and the model cannot take soft targets."""
        trainer = getattr(self, "trainer", None)
        module = trainer.lightning_module if trainer is not None else None
        if module is not None:
            check_soft_targets(module, self._aug_cfg())
            self._soft_targets_checked = True

    def augment_training_batch(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything a training batch gets after transfer: device-path augmentation, standardization, mixers."""
        cfg = self._aug_cfg()
        x = as_float_images(x)
        if cfg.jsd_splits and x.ndim == 5:  # (N, views, C, H, W) from SplitViews: split-major rows, labels repeated
            views = x.shape[1]
            x, y = x.transpose(0, 1).flatten(0, 1), y.repeat(views, *([1] * (y.ndim - 1)))
        gen = generator if generator is not None else self.augment_generator(x.device)
        if cfg.augment_on == "device" and not cfg.is_identity:
            x, _ = augment_batch(x, cfg, gen)
        x = self.standardizer(x)
        if cfg.has_mixing:
            num_classes = self.augment_num_classes
            if num_classes is None:  # configure_augmentation requires it with the mixers on
                raise ConfigError("`num_classes` is required for MixUp/CutMix soft targets; got None.")
            x, y, _ = mix_batch(x, y, num_classes, cfg, gen)
        elif cfg.label_smoothing > 0:
            if self.augment_num_classes is None:  # configure_augmentation requires it with smoothing on
                raise ConfigError("`num_classes` is required for label_smoothing soft targets; got None.")
            y = smooth_labels(y, self.augment_num_classes, cfg.label_smoothing)
        return x, y

    @override
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if not isinstance(batch, (tuple, list)) or len(batch) < 2 or not isinstance(batch[0], torch.Tensor):
            return batch
        trainer = getattr(self, "trainer", None)
        x, y = batch[0], batch[1]
        if trainer is not None and trainer.training:
            if self._aug_cfg().has_soft_targets and not self._soft_targets_checked:
                self.check_soft_targets()
            if self._aug_cfg().jsd_splits and self._jsd is None:
                self.attach_jsd()
            x, y = self.augment_training_batch(x, y)
        else:
            x = self.standardizer(as_float_images(x))
        rest = tuple(batch[2:])
        return type(batch)((x, y, *rest)) if isinstance(batch, tuple) else [x, y, *rest]

    def attach_jsd(self) -> None:
        """Hook the JSD consistency term (``augment.jsd_splits``) to the trainer's module, unless an
        :class:`~lightning_reg.callbacks.AugMixJSD` callback already does it."""
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("attach_jsd needs the DataModule attached to a Trainer.")
        module = trainer.lightning_module
        callbacks: list[Any] = trainer.callbacks  # type: ignore[attr-defined]  # a property Lightning types loosely
        if any(isinstance(getattr(cb, "jsd", None), JSDConsistency) for cb in callbacks):
            self._jsd = JSDConsistency(self._aug_cfg().jsd_splits)  # the callback's is the one attached
            return
        check_jsd_precision(str(trainer.precision))
        cfg = self._aug_cfg()
        scale = 1.0 / trainer.accumulate_grad_batches if module.automatic_optimization else 1.0
        self._jsd = JSDConsistency(cfg.jsd_splits, cfg.jsd_alpha, scale=scale)
        self._jsd.attach(module)

    @override
    def teardown(self, stage: str) -> None:
        if self._jsd is not None:
            self._jsd.detach()
            self._jsd = None
        super().teardown(stage)

    @override
    def state_dict(self) -> dict[str, Any]:
        state = dict(super().state_dict())
        state["augment_standardizer"] = self.standardizer.state_dict()
        gen = self._augment_generator
        if gen is not None:
            state["augment_generator"] = gen.get_state()
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        std = state_dict.get("augment_standardizer")
        if std:
            self.standardizer = Standardizer.from_state_dict(std)
            self._standardizer_loaded = True
        gen_state = state_dict.get("augment_generator")
        if gen_state is not None:
            self._augment_generator = None
            self._augment_generator_state = gen_state


def with_augmentation(
    datamodule: pl.LightningDataModule,
    augment: AugmentConfig | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
    seed: int = 0,
) -> pl.LightningDataModule:
    """Give an existing DataModule instance our augmentation, without changing its class definition.

    The instance is re-classed in place to a subclass of ``(AugmentationMixin, type(datamodule))`` and
    returned; its data, loaders and hooks stay the user's.

    Example:
        >>> import lightning.pytorch as pl
        >>> dm = with_augmentation(pl.LightningDataModule(), {"horizontal_flip": True})
        >>> isinstance(dm, AugmentationMixin)
        True
    """
    if isinstance(datamodule, AugmentationMixin):
        raise ConfigError(f"{type(datamodule).__name__} already has AugmentationMixin; call configure_augmentation.")
    if not isinstance(datamodule, pl.LightningDataModule):
        raise ConfigError(f"`datamodule` must be a LightningDataModule; got {type(datamodule).__name__}.")
    base = type(datamodule)
    datamodule.__class__ = type(f"Augmented{base.__name__}", (AugmentationMixin, base), {})
    # The re-classing above makes it an AugmentationMixin; mypy cannot follow a __class__ assignment.
    cast(AugmentationMixin, datamodule).configure_augmentation(augment, num_classes=num_classes, seed=seed)
    return datamodule
