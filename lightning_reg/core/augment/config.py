"""The augmentation config block: Keras ``ImageDataGenerator`` options, policies, erasing and batch mixers.

One validated dataclass shared by every DataModule (and :class:`AugmentationMixin`). Ranges follow Keras:
``rotation_range`` and ``shear_range`` in degrees, shifts as fractions of the image size, ``zoom_range``
as ``z`` (meaning ``[1 - z, 1 + z]``) or ``[lo, hi]``. Intensities are in units of the ``[0, 1]`` image
range (Keras' ``channel_shift_range`` on 0-255 images is our value times 255).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_reg.errors import ConfigError, check_bool, check_choice, check_int, check_non_negative, check_range

__all__ = [
    "AUGMENT_ON",
    "DEVICE_POLICIES",
    "ERASING_VALUES",
    "FILL_MODES",
    "MIX_MODES",
    "POLICIES",
    "ZCA_FORMULAS",
    "AugmentConfig",
]

POLICIES = ("randaugment", "trivialaugment", "autoaugment", "augmix")
#: The policies the device path runs too (batched, per sample: ``core/augment/policies.py``).
DEVICE_POLICIES = ("randaugment", "trivialaugment", "augmix")
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
AUGMENT_ON = ("device", "cpu")
MIX_MODES = ("elem", "batch", "pair")
ERASING_VALUES = ("zero", "random")
ZCA_FORMULAS = ("classic", "keras3")


def _pair(name: str, value: Any, low: float | None = None) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"`{name}` must be a pair [low, high]; got {value!r}.")
    lo = check_range(f"{name}[0]", value[0], low, None)
    hi = check_range(f"{name}[1]", value[1], low, None)
    if hi < lo:
        raise ConfigError(f"`{name}` must satisfy low <= high; got {value!r}.")
    return lo, hi


@dataclass
class AugmentConfig:
    """Validated augmentation options; every field defaults to "off".

    Args:
        augment_on: ``"device"``: batched in ``on_after_batch_transfer`` with a different draw per sample;
            ``"cpu"``: per-sample torchvision v2 transforms in the DataLoader workers.
        rotation_range: maximum rotation in degrees (uniform in ``[-r, r]``, counter-clockwise positive).
        width_shift_range, height_shift_range: maximum shift as a fraction of width/height.
        shear_range: maximum shear angle in degrees.
        zoom_range: ``z`` for ``[1 - z, 1 + z]`` or ``[lo, hi]``; x and y zoom are drawn independently and
            ``> 1`` zooms out, as in Keras.
        horizontal_flip, vertical_flip: flip with probability 1/2.
        brightness_range: ``[lo, hi]`` multiplicative brightness factor.
        channel_shift_range: maximum additive intensity shift (fraction of full scale).
        fill_mode: ``"nearest"``, ``"constant"`` (uses ``cval``), ``"reflect"`` or ``"wrap"``.
        cval: fill value for ``fill_mode="constant"``.
        crop_padding: random crop after zero-padding by this many pixels (``cifar_standard``: 4).
        featurewise_center, featurewise_std_normalization: per-channel mean/std of the training split.
        zca_whitening, zca_epsilon: ZCA whitening fitted on the training split (implies centering).
        zca_formula: ``"classic"`` (Keras 2.x and the literature: ``U diag(1/sqrt(lambda + eps)) U^T`` of the
            covariance) or ``"keras3"`` (Keras 3.15: ``U diag(sqrt(n)/(sigma + eps)) U^T`` from the data's
            singular values); see :func:`~lightning_reg.core.augment.featurewise.zca_matrix`.
        zca_pixel_mean: also remove each pixel's mean before whitening (ours; Keras removes only the
            per-channel mean). Off gives the matrix Keras computes.
        policy: ``None`` or one of ``randaugment, trivialaugment, autoaugment, augmix``; the device path runs
            ``randaugment``, ``trivialaugment`` and ``augmix`` (batched, per sample), the cpu path all four.
        policy_kwargs: keyword arguments for the torchvision policy (e.g. ``num_ops``, ``magnitude``).
        erasing_prob: per-sample probability of random erasing (Cutout); ``erasing_scale``,
            ``erasing_ratio`` and ``erasing_value`` (``"zero"`` or ``"random"``) as in torchvision.
        mixup_alpha, cutmix_alpha: Beta parameters; 0 disables the mixer.
        mix_prob: per-sample probability of mixing; switch_prob: chance of CutMix when both are on.
        mix_mode: ``"elem"`` (own lambda per sample), ``"batch"`` (one lambda) or ``"pair"`` (needs an
            even batch).
        label_smoothing: smoothing ``e`` of the training targets, ``(1 - e) one_hot + e / C`` (Keras'
            ``label_smoothing``); with MixUp/CutMix on, smoothed before mixing as timm's ``Mixup`` does. Alone
            it turns the integer labels into soft ``(N, C)`` targets, so the model must take them.
        jsd_splits: AugMix's consistency training (timm's ``num_splits``): 0 is off; ``k >= 2`` makes each training
            batch hold the clean images and ``k - 1`` views through ``policy``, split-major (``k * N`` rows, labels
            repeated), and adds ``jsd_alpha`` times the Jensen-Shannon consistency of the ``k`` predictions to the
            gradient, the module's loss counting the clean split (:mod:`lightning_reg.core.augment.jsd`).
            Needs ``augment_on='cpu'`` and a ``policy``.
        jsd_alpha: the JSD term's weight (timm and the paper: 12).

    Example:
        >>> cfg = AugmentConfig(rotation_range=20, width_shift_range=0.2, horizontal_flip=True)
        >>> cfg.has_geometry, cfg.has_mixing
        (True, False)
    """

    augment_on: str = "device"
    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: Any = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness_range: Any = None
    channel_shift_range: float = 0.0
    fill_mode: str = "nearest"
    cval: float = 0.0
    crop_padding: int = 0
    featurewise_center: bool = False
    featurewise_std_normalization: bool = False
    zca_whitening: bool = False
    zca_epsilon: float = 1e-6
    zca_formula: str = "classic"
    zca_pixel_mean: bool = True
    policy: str | None = None
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    erasing_prob: float = 0.0
    erasing_scale: Any = (0.02, 0.33)
    erasing_ratio: Any = (0.3, 3.3)
    erasing_value: str = "zero"
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5
    mix_mode: str = "elem"
    label_smoothing: float = 0.0
    jsd_splits: int = 0
    jsd_alpha: float = 12.0

    def __post_init__(self) -> None:
        import dataclasses

        for f in dataclasses.fields(self):
            if f.type in (bool, "bool"):
                check_bool(f"augment.{f.name}", getattr(self, f.name))
        check_choice("augment.augment_on", self.augment_on, AUGMENT_ON)
        for name in (
            "rotation_range",
            "width_shift_range",
            "height_shift_range",
            "shear_range",
            "channel_shift_range",
            "mixup_alpha",
            "cutmix_alpha",
        ):
            setattr(self, name, check_non_negative(f"augment.{name}", getattr(self, name)))
        check_range("augment.rotation_range", self.rotation_range, 0.0, 180.0)
        check_range("augment.shear_range", self.shear_range, 0.0, 89.0)
        check_range("augment.width_shift_range", self.width_shift_range, 0.0, 1.0)
        check_range("augment.height_shift_range", self.height_shift_range, 0.0, 1.0)
        if isinstance(self.zoom_range, (int, float)) and not isinstance(self.zoom_range, bool):
            z = check_range("augment.zoom_range", self.zoom_range, 0.0, 1.0, high_inclusive=False)
            self.zoom_range = (1.0 - z, 1.0 + z)
        else:
            self.zoom_range = _pair("augment.zoom_range", self.zoom_range)
            if self.zoom_range[0] <= 0:
                raise ConfigError(f"`augment.zoom_range` must be positive zoom factors; got {list(self.zoom_range)}.")
        self.brightness_range = _pair("augment.brightness_range", self.brightness_range, 0.0)
        check_choice("augment.fill_mode", self.fill_mode, FILL_MODES)
        self.cval = check_range("augment.cval", self.cval)
        check_int("augment.crop_padding", self.crop_padding, low=0)
        self.zca_epsilon = check_range("augment.zca_epsilon", self.zca_epsilon, 0.0, None, low_inclusive=False)
        check_choice("augment.zca_formula", self.zca_formula, ZCA_FORMULAS)
        if self.policy is not None:
            check_choice("augment.policy", self.policy, (*POLICIES, None))
            if self.augment_on != "cpu" and self.policy not in DEVICE_POLICIES:
                raise ConfigError(
                    f"`augment.policy={self.policy!r}` runs per sample in the DataLoader workers (the device path has "
                    f"{', '.join(DEVICE_POLICIES)}); set `augment.augment_on='cpu'` (got {self.augment_on!r})."
                )
        if not isinstance(self.policy_kwargs, Mapping):
            raise ConfigError(f"`augment.policy_kwargs` must be a mapping; got {self.policy_kwargs!r}.")
        self.policy_kwargs = dict(self.policy_kwargs)
        if self.policy in DEVICE_POLICIES and self.augment_on == "device":
            from lightning_reg.core.augment.policies import check_policy_kwargs  # imports torchvision: only here

            check_policy_kwargs(self.policy, self.policy_kwargs)
        self.erasing_prob = check_range("augment.erasing_prob", self.erasing_prob, 0.0, 1.0)
        self.erasing_scale = _pair("augment.erasing_scale", self.erasing_scale, 0.0)
        self.erasing_ratio = _pair("augment.erasing_ratio", self.erasing_ratio, 0.0)
        if self.erasing_scale[1] > 1.0 or self.erasing_ratio[0] <= 0.0:
            raise ConfigError(
                "`augment.erasing_scale` must lie in [0, 1] and `augment.erasing_ratio` must be positive; got "
                f"{list(self.erasing_scale)} and {list(self.erasing_ratio)}."
            )
        check_choice("augment.erasing_value", self.erasing_value, ERASING_VALUES)
        self.mix_prob = check_range("augment.mix_prob", self.mix_prob, 0.0, 1.0)
        self.switch_prob = check_range("augment.switch_prob", self.switch_prob, 0.0, 1.0)
        check_choice("augment.mix_mode", self.mix_mode, MIX_MODES)
        self.label_smoothing = check_range(
            "augment.label_smoothing", self.label_smoothing, 0.0, 1.0, high_inclusive=False
        )
        check_int("augment.jsd_splits", self.jsd_splits, low=0)
        self.jsd_alpha = check_non_negative("augment.jsd_alpha", self.jsd_alpha)
        if self.jsd_splits == 1:
            raise ConfigError("`augment.jsd_splits` must be 0 (off) or at least 2 (clean + views); got 1.")
        if self.jsd_splits and (self.policy is None or self.has_mixing or self.augment_on != "cpu"):
            raise ConfigError(
                "`augment.jsd_splits` needs a `policy` (e.g. 'augmix') on the cpu path and no MixUp/CutMix; got "
                f"policy={self.policy!r}, augment_on={self.augment_on!r}, mixup_alpha={self.mixup_alpha}, "
                f"cutmix_alpha={self.cutmix_alpha}."
            )

    @classmethod
    def from_any(cls, value: AugmentConfig | Mapping[str, Any] | None) -> AugmentConfig:
        """Build from a config, a mapping (Hydra's ``data.augment``) or ``None`` (no augmentation)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"`augment` must be a mapping of augmentation options; got {type(value).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"`augment` has unknown option(s) {unknown}; allowed: {sorted(known)}.")
        return cls(**dict(value))

    @property
    def has_affine(self) -> bool:
        """Rotation, shift, shear or zoom is on (one resampling)."""
        return bool(
            self.rotation_range
            or self.width_shift_range
            or self.height_shift_range
            or self.shear_range
            or self.zoom_range != (1.0, 1.0)
        )

    @property
    def has_geometry(self) -> bool:
        return self.has_affine or self.horizontal_flip or self.vertical_flip or self.crop_padding > 0

    @property
    def has_color(self) -> bool:
        return self.brightness_range is not None or self.channel_shift_range > 0

    @property
    def has_mixing(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    @property
    def has_soft_targets(self) -> bool:
        """Training targets become soft ``(N, C)`` floats: a mixer or label smoothing is on."""
        return self.has_mixing or self.label_smoothing > 0

    @property
    def has_standardization(self) -> bool:
        return self.featurewise_center or self.featurewise_std_normalization or self.zca_whitening

    @property
    def is_identity(self) -> bool:
        """Nothing to do on training batches (standardization aside)."""
        return not (
            self.has_geometry or self.has_color or self.erasing_prob > 0 or self.has_mixing or self.policy is not None
        )
