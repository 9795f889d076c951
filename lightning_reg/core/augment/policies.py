"""RandAugment and TrivialAugmentWide on the device path: per-sample ops and magnitudes, batched (pure torch).

The op list and each op's magnitude table are torchvision v2's (``RandAugment`` and ``TrivialAugmentWide``,
checked against torchvision's own tables in ``tests/core/test_device_policies.py``), and each op is the torchvision
v2 functional it calls, on uint8 images with nearest interpolation and fill 0, as on the cpu path. Each sample
draws its own op (and, for TrivialAugment, its own magnitude bin) and sign from the DataModule's
``torch.Generator``; the samples that drew the same op and magnitude are transformed in one batched call, so a
batch costs at most one call per (op, magnitude) present, on the batch's device.

Example:
    >>> x = torch.rand(8, 3, 16, 16)
    >>> out = policy_batch(x, "randaugment", {"num_ops": 2, "magnitude": 9}, torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype
    (torch.Size([8, 3, 16, 16]), torch.float32)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F

from lightning_reg.core.augment.sampling import sample_gamma
from lightning_reg.errors import ConfigError, check_bool, check_int, check_range

__all__ = ["apply_op", "check_policy_kwargs", "magnitudes", "op_space", "policy_batch"]

Table = Callable[[int, int, int], torch.Tensor | None]


def _lin(end: float) -> Table:
    return lambda bins, h, w: torch.linspace(0.0, end, bins)


def _posterize(div: float) -> Table:
    return lambda bins, h, w: (8 - (torch.arange(bins) / ((bins - 1) / div))).round().int()


_NONE: Table = lambda bins, h, w: None  # noqa: E731
_SOLARIZE: Table = lambda bins, h, w: torch.linspace(1.0, 0.0, bins)  # noqa: E731

#: ``{op: (magnitudes(num_bins, height, width), signed)}`` in torchvision v2's order, per policy.
_SPACES: dict[str, dict[str, tuple[Table, bool]]] = {
    "randaugment": {
        "Identity": (_NONE, False),
        "ShearX": (_lin(0.3), True),
        "ShearY": (_lin(0.3), True),
        "TranslateX": (lambda bins, h, w: torch.linspace(0.0, 150.0 / 331.0 * w, bins), True),
        "TranslateY": (lambda bins, h, w: torch.linspace(0.0, 150.0 / 331.0 * h, bins), True),
        "Rotate": (_lin(30.0), True),
        "Brightness": (_lin(0.9), True),
        "Color": (_lin(0.9), True),
        "Contrast": (_lin(0.9), True),
        "Sharpness": (_lin(0.9), True),
        "Posterize": (_posterize(4), False),
        "Solarize": (_SOLARIZE, False),
        "AutoContrast": (_NONE, False),
        "Equalize": (_NONE, False),
    },
    "trivialaugment": {
        "Identity": (_NONE, False),
        "ShearX": (_lin(0.99), True),
        "ShearY": (_lin(0.99), True),
        "TranslateX": (_lin(32.0), True),
        "TranslateY": (_lin(32.0), True),
        "Rotate": (_lin(135.0), True),
        "Brightness": (_lin(0.99), True),
        "Color": (_lin(0.99), True),
        "Contrast": (_lin(0.99), True),
        "Sharpness": (_lin(0.99), True),
        "Posterize": (_posterize(6), False),
        "Solarize": (_SOLARIZE, False),
        "AutoContrast": (_NONE, False),
        "Equalize": (_NONE, False),
    },
    "augmix": {
        "ShearX": (_lin(0.3), True),
        "ShearY": (_lin(0.3), True),
        "TranslateX": (lambda bins, h, w: torch.linspace(0.0, w / 3.0, bins), True),
        "TranslateY": (lambda bins, h, w: torch.linspace(0.0, h / 3.0, bins), True),
        "Rotate": (_lin(30.0), True),
        "Posterize": (lambda bins, h, w: (4 - (torch.arange(bins) / ((bins - 1) / 4))).round().int(), False),
        "Solarize": (_SOLARIZE, False),
        "AutoContrast": (_NONE, False),
        "Equalize": (_NONE, False),
        "Brightness": (_lin(0.9), True),
        "Color": (_lin(0.9), True),
        "Contrast": (_lin(0.9), True),
        "Sharpness": (_lin(0.9), True),
    },
}
#: AugMix without ``all_ops``: the first nine (torchvision's partial space).
_AUGMIX_PARTIAL = 9


def op_space(policy: str) -> list[str]:
    """The ops of ``policy`` in torchvision's order.

    Example:
        >>> op_space("trivialaugment")[:3]
        ['Identity', 'ShearX', 'ShearY']
    """
    if policy not in _SPACES:
        raise ConfigError(f"`augment.policy` on the device path must be one of {list(_SPACES)}; got {policy!r}.")
    return list(_SPACES[policy])


def magnitudes(policy: str, op: str, num_bins: int, height: int, width: int) -> tuple[torch.Tensor | None, bool]:
    """``op``'s magnitude table under ``policy`` (None for ops without one) and whether its sign is random.

    Example:
        >>> m, signed = magnitudes("randaugment", "Rotate", 31, 32, 32)
        >>> float(m[9]), signed
        (9.0, True)
    """
    table, signed = _SPACES[policy][op]
    return table(num_bins, height, width), signed


def apply_op(img: torch.Tensor, op: str, magnitude: float, bilinear: bool = False) -> torch.Tensor:
    """One op on a uint8 batch ``(n, C, H, W)`` with one magnitude: what torchvision v2's policies call (the
    geometric ops with nearest interpolation, or bilinear as AugMix's default).

    Example:
        >>> apply_op(torch.full((1, 1, 2, 2), 200, dtype=torch.uint8), "Solarize", 0.5).flatten().tolist()
        [55, 55, 55, 55]
    """
    nearest = F.InterpolationMode.BILINEAR if bilinear else F.InterpolationMode.NEAREST
    if op == "Identity":
        return img
    if op in ("ShearX", "ShearY"):
        shear = (
            [math.degrees(math.atan(magnitude)), 0.0] if op == "ShearX" else [0.0, math.degrees(math.atan(magnitude))]
        )
        return F.affine(
            img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest, fill=None, center=[0, 0]
        )
    if op in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        return F.affine(img, angle=0.0, translate=shift, scale=1.0, interpolation=nearest, shear=[0.0, 0.0], fill=None)
    if op == "Rotate":
        return F.rotate(img, angle=magnitude, interpolation=nearest, fill=None)
    if op == "Brightness":
        return F.adjust_brightness(img, brightness_factor=1.0 + magnitude)
    if op == "Color":
        return F.adjust_saturation(img, saturation_factor=1.0 + magnitude)
    if op == "Contrast":
        return F.adjust_contrast(img, contrast_factor=1.0 + magnitude)
    if op == "Sharpness":
        return F.adjust_sharpness(img, sharpness_factor=1.0 + magnitude)
    if op == "Posterize":
        return F.posterize(img, bits=int(magnitude))
    if op == "Solarize":
        return F.solarize(img, threshold=255.0 * magnitude)
    if op == "AutoContrast":
        return F.autocontrast(img)
    if op == "Equalize":
        return F.equalize(img)
    raise ConfigError(f"unknown augmentation op {op!r}; known: {sorted(_SPACES['randaugment'])}.")


def check_policy_kwargs(policy: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the device path's ``policy_kwargs`` (torchvision's names and defaults); return them completed.

    Example:
        >>> check_policy_kwargs("randaugment", {"magnitude": 5})["num_ops"]
        2
    """
    allowed = {
        "randaugment": ("num_ops", "magnitude", "num_magnitude_bins"),
        "trivialaugment": ("num_magnitude_bins",),
        "augmix": ("severity", "mixture_width", "chain_depth", "alpha", "all_ops"),
    }
    unknown = sorted(set(kwargs) - set(allowed[policy]))
    if unknown:
        raise ConfigError(
            f"`augment.policy_kwargs` for {policy!r} on the device path takes {list(allowed[policy])}; got {unknown} "
            "(interpolation and fill are torchvision's defaults: nearest, 0)."
        )
    out: dict[str, Any] = {"num_ops": 2, "magnitude": 9, "num_magnitude_bins": 31} | dict(kwargs)
    if policy == "augmix":
        out = {"severity": 3, "mixture_width": 3, "chain_depth": -1, "alpha": 1.0, "all_ops": True} | dict(kwargs)
        check_int("augment.policy_kwargs.severity", out["severity"], low=1, high=10)
        check_int("augment.policy_kwargs.mixture_width", out["mixture_width"], low=1)
        check_int("augment.policy_kwargs.chain_depth", out["chain_depth"])
        out["alpha"] = check_range("augment.policy_kwargs.alpha", out["alpha"], 0.0, None, low_inclusive=False)
        check_bool("augment.policy_kwargs.all_ops", out["all_ops"])
        return out
    bins = check_int("augment.policy_kwargs.num_magnitude_bins", out["num_magnitude_bins"], low=2)
    check_int("augment.policy_kwargs.num_ops", out["num_ops"], low=0)
    check_int("augment.policy_kwargs.magnitude", out["magnitude"], low=0, high=bins - 1)
    return out


def policy_batch(
    x: torch.Tensor, policy: str, kwargs: Mapping[str, Any] | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """RandAugment or TrivialAugmentWide on a float ``[0, 1]`` batch ``(N, C, H, W)``, per sample, on its device.

    The images go through uint8 as on the cpu path (``ToUint8Image``, the policy, ``ToFloatImage``).
    """
    ops = op_space(policy)
    opts = check_policy_kwargs(policy, kwargs or {})
    n, _, h, w = x.shape
    dev = x.device
    img = (x * 255.0).round().clamp(0, 255).to(torch.uint8)
    if policy == "augmix":
        return _augmix(img, opts, generator).float().div_(255.0)
    bins = opts["num_magnitude_bins"]
    for _ in range(opts["num_ops"] if policy == "randaugment" else 1):
        which = torch.randint(len(ops), (n,), generator=generator, device=dev)
        if policy == "randaugment":
            level = torch.full((n,), opts["magnitude"], device=dev)
        else:
            level = torch.randint(bins, (n,), generator=generator, device=dev)
        negative = torch.rand(n, generator=generator, device=dev) <= 0.5
        img = _apply_drawn(img, policy, ops, which, level, negative, bins)
    return img.float().div_(255.0)


def _apply_drawn(
    img: torch.Tensor,
    policy: str,
    ops: list[str],
    which: torch.Tensor,
    level: torch.Tensor,
    negative: torch.Tensor,
    bins: int,
    active: torch.Tensor | None = None,
    bilinear: bool = False,
) -> torch.Tensor:
    """Each sample's drawn op ``ops[which]`` at magnitude bin ``level`` (negated where ``negative`` and signed)."""
    h, w = img.shape[-2:]
    out = img.clone()
    for k, op in enumerate(ops):
        table, signed = magnitudes(policy, op, bins, h, w)
        chosen = which == k if active is None else (which == k) & active
        if op == "Identity" or not bool(chosen.any()):
            continue
        # one batched call per (magnitude bin, sign) present among the samples that drew this op
        key = level * 2 + (negative & signed).long() if table is not None else torch.zeros_like(level)
        for value in torch.unique(key[chosen]).tolist():
            rows = (chosen & (key == value)).nonzero().flatten()
            magnitude = 0.0 if table is None else float(table[value // 2]) * (-1.0 if value % 2 else 1.0)
            out[rows] = apply_op(img[rows], op, magnitude, bilinear)
    return out


def _dirichlet(n: int, k: int, alpha: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    g = sample_gamma((n, k), alpha, generator, device)
    return g / g.sum(1, keepdim=True).clamp_min(1e-30)


def _augmix(img: torch.Tensor, opts: dict[str, Any], generator: torch.Generator | None) -> torch.Tensor:
    """torchvision v2 ``AugMix.forward`` with every draw per sample: Dirichlet weights, chains of 1-3 ops."""
    n, dev = img.shape[0], img.device
    ops = op_space("augmix")[: None if opts["all_ops"] else _AUGMIX_PARTIAL]
    m = _dirichlet(n, 2, opts["alpha"], generator, dev)
    weights = _dirichlet(n, opts["mixture_width"], opts["alpha"], generator, dev) * m[:, 1:2]
    mix = m[:, 0].view(n, 1, 1, 1) * img
    fixed = opts["chain_depth"] > 0
    for i in range(opts["mixture_width"]):
        aug = img
        depth = (
            torch.full((n,), opts["chain_depth"], device=dev)
            if fixed
            else torch.randint(1, 4, (n,), generator=generator, device=dev)
        )
        for step in range(opts["chain_depth"] if fixed else 3):
            which = torch.randint(len(ops), (n,), generator=generator, device=dev)
            level = torch.randint(opts["severity"], (n,), generator=generator, device=dev)
            negative = torch.rand(n, generator=generator, device=dev) <= 0.5
            aug = _apply_drawn(aug, "augmix", ops, which, level, negative, 10, active=step < depth, bilinear=True)
        mix = mix + weights[:, i].view(n, 1, 1, 1) * aug
    return mix.to(torch.uint8)
