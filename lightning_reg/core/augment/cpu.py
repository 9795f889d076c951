"""The CPU augmentation path (``augment_on="cpu"``): :func:`build_cpu_transform`, a per-sample
``torchvision.transforms.v2.Compose`` for DataLoader workers: policy (RandAugment, ...) on uint8, ``v2.RandomCrop``,
the Keras affine, ``v2.RandomHorizontalFlip``/``v2.RandomVerticalFlip``, brightness/channel shift,
``v2.RandomErasing``.

It applies the same parameter distributions in the same order as the device path
(:func:`~lightning_reg.core.augment.device.augment_batch`). Standardization (mean/std, ZCA) and the batch mixers
run batched after transfer on both paths (see :class:`~lightning_reg.data.augment_mixin.AugmentationMixin`).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2
from typing_extensions import override

from lightning_reg.core.augment.color import apply_color
from lightning_reg.core.augment.config import AugmentConfig
from lightning_reg.core.augment.featurewise import as_float_images
from lightning_reg.core.augment.geometric import affine_matrices, sample_affine_params, warp_affine
from lightning_reg.errors import ConfigError

__all__ = [
    "RandomKerasAffine",
    "RandomKerasColor",
    "ToFloatImage",
    "ToUint8Image",
    "SplitViews",
    "build_cpu_transform",
    "build_train_transform",
    "make_policy",
]


class RandomKerasAffine(v2.Transform):
    """Per-sample Keras affine (rotation, shift, shear, anisotropic zoom) as a torchvision v2 transform.

    torchvision's ``RandomAffine`` has isotropic zoom, rounds shifts to whole pixels and fills only with a
    constant, so Keras' semantics need their own transform. It draws from the same sampler as the device
    path (torch's global RNG, which DataLoader seeds per worker) and applies the same warp.

    Example:
        >>> t = RandomKerasAffine(AugmentConfig(rotation_range=30))
        >>> t(torch.rand(1, 8, 8)).shape
        torch.Size([1, 8, 8])
    """

    def __init__(self, cfg: AugmentConfig, record: list[dict[str, float]] | None = None) -> None:
        super().__init__()
        self.cfg = AugmentConfig.from_any(
            {
                **cfg.__dict__,
                "horizontal_flip": False,
                "vertical_flip": False,
                "crop_padding": 0,
                "policy": None,
                "augment_on": "cpu",
            }
        )
        self.record = record

    @override
    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.functional.get_size(flat_inputs[0])
        p = sample_affine_params(1, self.cfg, h, w)
        if self.record is not None:
            self.record.append({k: float(v) for k, v in p.items()})
        return {"theta": affine_matrices(p, h, w)}

    @override
    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or inpt.ndim != 3:
            return inpt
        return warp_affine(inpt.unsqueeze(0).float(), params["theta"], self.cfg.fill_mode, self.cfg.cval)[0]


class RandomKerasColor(v2.Transform):
    """Per-sample Keras brightness and channel shift, drawn like the device path (global RNG).

    Example:
        >>> RandomKerasColor(AugmentConfig(brightness_range=[0.5, 0.5]))(torch.ones(1, 2, 2)).max().item()
        0.5
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @override
    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or inpt.ndim != 3:
            return inpt
        return apply_color(inpt.unsqueeze(0).float(), self.cfg)[0][0]


class ToFloatImage(v2.Transform):
    """uint8 ``[0, 255]`` to float ``[0, 1]``; floats pass through (digits are float already).

    Example:
        >>> ToFloatImage()(torch.tensor([[[0, 255]]], dtype=torch.uint8)).tolist()
        [[[0.0, 1.0]]]
        >>> ToFloatImage()(torch.tensor([[[0.25]]])).tolist()
        [[[0.25]]]
    """

    @override
    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return as_float_images(inpt) if isinstance(inpt, torch.Tensor) else inpt


class ToUint8Image(v2.Transform):
    """float ``[0, 1]`` to uint8 for the torchvision policies; uint8 passes through.

    Example:
        >>> img = ToUint8Image()(torch.tensor([[[0.0, 0.5, 1.0]]]))
        >>> img.dtype, img.tolist()
        (torch.uint8, [[[0, 128, 255]]])
    """

    @override
    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, torch.Tensor) and inpt.is_floating_point():
            return (inpt * 255.0).round().clamp(0, 255).to(torch.uint8)
        return inpt


_FILL_TO_PAD = {"nearest": "edge", "constant": "constant", "reflect": "symmetric", "wrap": "constant"}


def make_policy(name: str, kwargs: dict[str, Any]) -> v2.Transform:
    """A torchvision v2 policy by name, with its parameters.

    Example:
        >>> type(make_policy("randaugment", {"num_ops": 2, "magnitude": 9})).__name__
        'RandAugment'
    """
    classes = {
        "randaugment": v2.RandAugment,
        "trivialaugment": v2.TrivialAugmentWide,
        "autoaugment": v2.AutoAugment,
        "augmix": v2.AugMix,
    }
    if name not in classes:
        raise ConfigError(f"`augment.policy` must be one of {', '.join(map(repr, classes))}; got {name!r}.")
    kwargs = dict(kwargs)
    if name == "autoaugment" and isinstance(kwargs.get("policy"), str):
        choices = {p.value.lower(): p for p in v2.AutoAugmentPolicy}
        key = kwargs["policy"].lower()
        if key not in choices:
            raise ConfigError(
                f"`augment.policy_kwargs.policy` must be one of {sorted(choices)}; got {kwargs['policy']!r}."
            )
        kwargs["policy"] = choices[key]
    try:
        return classes[name](**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"`augment.policy_kwargs` for {name!r} are invalid: {err}") from None


def build_cpu_transform(cfg: AugmentConfig, height: int, width: int) -> v2.Compose:
    """Cpu path: per-sample torchvision v2 pipeline from uint8/float ``(C, H, W)`` to augmented float [0, 1].

    Example:
        >>> t = build_cpu_transform(AugmentConfig(augment_on="cpu", crop_padding=4, horizontal_flip=True), 32, 32)
        >>> t(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)).dtype
        torch.float32
    """
    steps: list[v2.Transform] = []
    if cfg.policy is not None:
        steps += [ToUint8Image(), make_policy(cfg.policy, cfg.policy_kwargs)]
    steps.append(ToFloatImage())
    if cfg.crop_padding:
        steps.append(
            v2.RandomCrop(
                (height, width),
                padding=cfg.crop_padding,
                fill=cfg.cval if cfg.has_affine else 0.0,
                padding_mode=_FILL_TO_PAD[cfg.fill_mode] if cfg.has_affine else "constant",
            )
        )
    if cfg.has_affine:
        steps.append(RandomKerasAffine(cfg))
    if cfg.horizontal_flip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if cfg.vertical_flip:
        steps.append(v2.RandomVerticalFlip(0.5))
    if cfg.has_color:
        steps.append(RandomKerasColor(cfg))
    if cfg.erasing_prob > 0:
        steps.append(
            v2.RandomErasing(
                cfg.erasing_prob,
                scale=cfg.erasing_scale,
                ratio=cfg.erasing_ratio,
                value="random" if cfg.erasing_value == "random" else 0.0,
            )
        )
    return v2.Compose(steps)


class SplitViews:
    """The clean image and ``splits - 1`` policy views of it, stacked ``(splits, C, H, W)`` (timm's AugMixDataset).

    ``base`` (crop, affine, flips, colour, erasing) runs once; the policy then runs on its output for each view.

    Example:
        >>> cfg = AugmentConfig(augment_on="cpu", policy="augmix", jsd_splits=3)
        >>> build_train_transform(cfg, 8, 8)(torch.rand(1, 8, 8)).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(self, base: v2.Compose, policy: v2.Compose, splits: int) -> None:
        self.base, self.policy, self.splits = base, policy, splits

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        clean = self.base(img)
        return torch.stack([clean] + [self.policy(clean) for _ in range(self.splits - 1)])


def build_train_transform(cfg: AugmentConfig, height: int, width: int) -> v2.Compose | SplitViews:
    """The training split's per-sample transform: :func:`build_cpu_transform`, or :class:`SplitViews` with
    ``jsd_splits``."""
    if not cfg.jsd_splits or cfg.policy is None:
        return build_cpu_transform(cfg, height, width)
    base = build_cpu_transform(AugmentConfig.from_any({**cfg.__dict__, "policy": None, "jsd_splits": 0}), height, width)
    policy = v2.Compose([ToUint8Image(), make_policy(cfg.policy, cfg.policy_kwargs), ToFloatImage()])
    return SplitViews(base, policy, cfg.jsd_splits)
