"""The weight constraints and the regularizer Keras has beside ``MaxNorm``, as rules of :mod:`~.penalty_rules`.

Each follows the Keras 3 formula on the same tensor layout, so the result matches Keras' on identical weights:
a torch kernel is seen as Keras stores it, ``(fan_in..., units)``, by moving its output-unit dimension last
(a Linear weight ``(out, in)`` is Keras' Dense kernel ``(in, out)`` transposed).

- :class:`MinMaxNorm`: ``w ← w·(rate·clip(n, min, max) + (1 − rate)·n) / (ε + n)``, ``n`` each unit's L2 norm;
- :class:`UnitNorm`: ``w ← w / (ε + n)``;
- :class:`NonNeg`: ``w ← w·[w ≥ 0]``;
- :class:`Orthogonal`: the penalty ``factor·½·Σ_{i≠j}|⟨v̂_i, v̂_j⟩| / (k(k−1)/2)`` over the ``k`` normalized rows
  (``mode="rows"``: one per input feature) or columns (``"columns"``: one per output unit) of the Keras-layout
  kernel; its gradient is added to ``param.grad``.

``ε`` is Keras' ``epsilon()``, 1e-7. ``axis=None`` takes each norm over every dimension but the output unit's
(Keras' ``axis=0`` on a Dense kernel, ``[0, 1, 2]`` on a Conv2D kernel); an ``axis`` given names torch dimensions.

Example:
    >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    >>> bucket = Bucket({}, UnitNorm(), params=[w], dims=[0])
    >>> UnitNorm().after_step_(bucket, 1.0); [round(float(n), 4) for n in w.norm(dim=1)]
    [1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lightning_reg.core.penalty_rules import Bucket, PenaltyRule, unit_norms, with_grads
from lightning_reg.errors import ConfigError, check_choice, check_non_negative, check_range

__all__ = ["EPSILON", "MinMaxNorm", "NonNeg", "Orthogonal", "UnitNorm", "keras_layout", "orthogonal_penalty"]

#: Keras' ``backend.epsilon()``.
EPSILON = 1e-7


def _check_axis(option: str, axis: Any) -> tuple[int, ...] | None:
    if axis is None:
        return None
    items = [axis] if isinstance(axis, int) else axis
    if isinstance(items, (str, bytes)) or not all(isinstance(a, int) and not isinstance(a, bool) for a in items):
        raise ConfigError(f"`{option}` must be None, a dimension (int) or a list of dimensions; got {axis!r}.")
    return tuple(items)


def _norm_dims(param: Tensor, dim: int, axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is not None:
        return axis
    return tuple(d for d in range(param.ndim) if d != dim) if param.ndim > 1 else (0,)


@dataclass(frozen=True)
class _NormConstraint(PenaltyRule):
    """A constraint on each unit's L2 norm; logs the largest and smallest unit norm."""

    uses_after_step: ClassVar[bool] = True

    def _desired(self, norms: Tensor) -> Tensor:
        raise NotImplementedError

    @override
    def stats(self, bucket: Bucket) -> dict[str, float]:
        if not bucket.params:
            return {}
        norms = [unit_norms(p, d) for p, d in zip(bucket.params, bucket.dims)]
        return {
            "max_unit_norm": float(torch.stack([n.max() for n in norms]).max()),
            "min_unit_norm": float(torch.stack([n.min() for n in norms]).min()),
        }

    @override
    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        if not stats or not any(stats):
            return {}
        return {
            "reg/max_unit_norm": max(s["max_unit_norm"] for s in stats if s),
            "reg/min_unit_norm": min(s["min_unit_norm"] for s in stats if s),
        }


@dataclass(frozen=True)
class MinMaxNorm(_NormConstraint):
    """Keras' ``MinMaxNorm``: each unit's norm moved toward ``[min_value, max_value]`` at ``rate`` per step."""

    min_value: float = 0.0
    max_value: float = 1.0
    rate: float = 1.0
    axis: tuple[int, ...] | None = None
    name: ClassVar[str] = "min_max_norm"
    group_example: ClassVar[str] = "{'max_value': 2.0}"

    @classmethod
    @override
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key == "axis":
                out[key] = _check_axis(prefix + key, value)
            elif key == "rate":
                out[key] = check_range(prefix + key, value, 0.0, 1.0)
            else:
                out[key] = check_non_negative(prefix + key, value)
        return out

    @override
    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_value > self.max_value:
            raise ConfigError(
                f"`min_value` must be <= `max_value`; got min_value={self.min_value!r}, max_value={self.max_value!r}."
            )

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        for p, d in zip(bucket.params, bucket.dims):
            norms = p.square().sum(_norm_dims(p, d, self.axis), keepdim=True).sqrt()
            desired = self.rate * norms.clamp(self.min_value, self.max_value) + (1 - self.rate) * norms
            p.copy_(p * (desired / (EPSILON + norms)))


@dataclass(frozen=True)
class UnitNorm(_NormConstraint):
    """Keras' ``UnitNorm``: each unit's incoming weights rescaled to norm 1."""

    axis: tuple[int, ...] | None = None
    name: ClassVar[str] = "unit_norm"
    group_example: ClassVar[str] = "{'axis': [1]}"

    @classmethod
    @override
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _check_axis(prefix + k, v) for k, v in values.items()}

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        for p, d in zip(bucket.params, bucket.dims):
            p.copy_(p / (EPSILON + p.square().sum(_norm_dims(p, d, self.axis), keepdim=True).sqrt()))


@dataclass(frozen=True)
class NonNeg(PenaltyRule):
    """Keras' ``NonNeg``: negative weights set to zero; logs the fraction of zero weights."""

    name: ClassVar[str] = "non_neg"
    uses_after_step: ClassVar[bool] = True

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        for p in bucket.params:
            p.copy_(p * (p >= 0.0).to(p.dtype))

    @override
    def stats(self, bucket: Bucket) -> dict[str, float]:
        return {
            "zero": float(sum(int((p == 0).sum()) for p in bucket.params)),
            "numel": float(sum(p.numel() for p in bucket.params)),
        }

    @override
    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        numel = sum(s.get("numel", 0.0) for s in stats)
        return {"reg/zero_frac": sum(s.get("zero", 0.0) for s in stats) / max(1.0, numel)} if numel else {}


def keras_layout(param: Tensor, dim: int) -> Tensor:
    """The kernel as Keras stores it: ``(fan_in, units)`` (the unit dimension last, the others flattened)."""
    if param.ndim < 2:
        raise ConfigError(
            f"the orthogonal regularizer needs kernels (2 or more dimensions); got shape {tuple(param.shape)}."
        )
    return param.movedim(dim, -1).reshape(-1, param.shape[dim])


def orthogonal_penalty(kernel: Tensor, factor: float, mode: str) -> Tensor:
    """Keras' ``OrthogonalRegularizer(factor, mode)(kernel)`` on a ``(fan_in, units)`` kernel (differentiable).

    Example:
        >>> round(float(orthogonal_penalty(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), 1.0, "rows")), 4)  # cos 45°
        0.7071
    """
    axis = 1 if mode == "rows" else 0
    inv_norm = torch.rsqrt(kernel.square().sum(axis, keepdim=True)).clamp_max(1.0 / EPSILON)
    unit = kernel * inv_norm
    product = unit @ unit.T if mode == "rows" else unit.T @ unit
    size = product.shape[0]
    off_diagonal = product * (1.0 - torch.eye(size, dtype=product.dtype, device=product.device))
    return factor * 0.5 * off_diagonal.abs().sum() / (size * (size - 1.0) / 2.0)


@dataclass(frozen=True)
class Orthogonal(PenaltyRule):
    """Keras' ``OrthogonalRegularizer``: a penalty on the cosines between a kernel's rows or columns (Keras layout:
    ``"rows"`` are the input features, ``"columns"`` the output units), added to the gradient."""

    factor: float = 0.01
    mode: str = "rows"
    name: ClassVar[str] = "orthogonal"
    uses_grad: ClassVar[bool] = True
    group_example: ClassVar[str] = "{'factor': 0.1}"

    @classmethod
    @override
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: check_choice(prefix + k, v, ("rows", "columns")) if k == "mode" else check_non_negative(prefix + k, v)
            for k, v in values.items()
        }

    @override
    def does_nothing(self, variants: Sequence[PenaltyRule]) -> bool:
        return not any(getattr(r, "factor", 0.0) > 0 for r in variants)

    @override
    def needs_grad(self, variants: Sequence[PenaltyRule]) -> bool:
        return True

    def _penalties(self, params: Sequence[Tensor], dims: Sequence[int], scale: float) -> Tensor:
        return torch.stack(
            [orthogonal_penalty(keras_layout(p, d), self.factor * scale, self.mode) for p, d in zip(params, dims)]
        ).sum()

    @override
    def grad_(self, bucket: Bucket, scale: float) -> None:
        if self.factor * scale == 0.0:
            return
        with_grad, grads = with_grads(bucket.params)
        dims = [d for p, d in zip(bucket.params, bucket.dims) if p.grad is not None]
        with torch.enable_grad():
            leaves = [p.detach().requires_grad_() for p in with_grad]
            penalty_grads = torch.autograd.grad(self._penalties(leaves, dims, scale), leaves)
        for g, pg in zip(grads, penalty_grads):
            g.add_(pg)

    @override
    def value(self, params: Sequence[Tensor], scale: float, dims: Sequence[int] | None = None) -> Tensor:
        return self._penalties(params, list(dims) if dims is not None else [0] * len(params), scale)

    @override
    def stats(self, bucket: Bucket) -> dict[str, float]:
        with torch.no_grad():
            return {"orthogonal": float(self._penalties(bucket.params, bucket.dims, 1.0))} if bucket.params else {}

    @override
    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        return {"reg/orthogonal": scale * sum(s.get("orthogonal", 0.0) for s in stats)}
