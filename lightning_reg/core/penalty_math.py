"""Penalty and constraint math on tensor lists: values, norms and in-place updates (fused foreach ops, no autograd).

Convention (Keras'): the penalty is ``l1·Σ|w| + l2·Σw²`` (no ½ factor), so its gradient is ``l1·sign(w) + 2·l2·w``.

Example:
    >>> w = [torch.tensor([-3.0, 0.5, 2.0])]
    >>> round(float(penalty_value(w, w, l1=0.1, l2=0.01)), 6)  # 0.1·5.5 + 0.01·13.25
    0.6825
    >>> soft_threshold_(w, 1.0); w[0].tolist()
    [-2.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_reg._torch_internals import (
    foreach_add_,
    foreach_clamp_max,
    foreach_clamp_min_,
    foreach_mul_,
    foreach_norm,
    foreach_sign,
    foreach_sub_,
)

__all__ = [
    "TensorList",
    "add_penalty_grad_",
    "count_zeros",
    "decoupled_step_",
    "l1_norm",
    "max_norm_",
    "max_norm_inplace",
    "penalty_grad_inplace",
    "penalty_value",
    "soft_threshold_",
    "sq_l2_norm",
]

#: What torch's fused ``_foreach_*`` ops accept: a list or a tuple of tensors (not any sequence).
TensorList = list[Tensor] | tuple[Tensor, ...]


# --------------------------------------------------------------------------------------------------
# Values and in-place updates (fused multi-tensor ops, no autograd graph)
# --------------------------------------------------------------------------------------------------


def penalty_value(l1_params: Sequence[Tensor], l2_params: Sequence[Tensor], l1: float, l2: float) -> Tensor:
    """Differentiable ``l1·Σ|w| + l2·Σw²`` over the given tensors (for a loss).

    Example:
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> penalty_value([w], [w], 0.5, 0.25).backward(); w.grad.tolist()  # l1·sign(w) + 2·l2·w
        [1.0, -1.5]
    """
    total: Tensor | None = None
    if l1 > 0 and l1_params:
        total = l1 * torch.stack([p.abs().sum() for p in l1_params]).sum()
    if l2 > 0 and l2_params:
        term = l2 * torch.stack([p.pow(2).sum() for p in l2_params]).sum()
        total = term if total is None else total + term
    if total is None:
        ref = next(iter(l1_params or l2_params), None)
        return torch.zeros((), device=ref.device if ref is not None else None)
    return total


@torch.no_grad()
def l1_norm(params: TensorList) -> Tensor:
    """``Σ|w|`` over a tensor list, as a float32 scalar (no autograd)."""
    if not params:
        return torch.zeros(())
    return torch.stack(foreach_norm(params, 1)).float().sum()


@torch.no_grad()
def sq_l2_norm(params: TensorList) -> Tensor:
    """``Σw²`` over a tensor list, as a float32 scalar (no autograd)."""
    if not params:
        return torch.zeros(())
    return torch.stack(foreach_norm(params, 2)).float().pow(2).sum()


@torch.no_grad()
def count_zeros(params: Sequence[Tensor]) -> int:
    """Number of entries exactly equal to zero."""
    return int(sum(int((p == 0).sum()) for p in params))


@torch.no_grad()
def add_penalty_grad_(params: TensorList, grads: TensorList, l1: float, l2: float) -> None:
    """In place: ``grad += l1·sign(w) + 2·l2·w`` for every (param, grad) pair, with fused foreach ops.

    Example:
        >>> w, g = torch.tensor([1.0, -2.0, 0.0]), torch.zeros(3)
        >>> add_penalty_grad_([w], [g], l1=0.5, l2=0.25); g.tolist()
        [1.0, -1.5, 0.0]
    """
    penalty_grad_inplace(params, grads, l1, l2)


def penalty_grad_inplace(params: TensorList, grads: TensorList, l1: float, l2: float) -> None:
    """:func:`add_penalty_grad_` without its ``no_grad`` wrapper, for a caller already under ``torch.no_grad()``
    (a callback hook doing several buckets in one context)."""
    if not params:
        return
    if l2 > 0:
        foreach_add_(grads, params, alpha=2.0 * l2)
    if l1 > 0:
        foreach_add_(grads, foreach_sign(params), alpha=l1)


@torch.no_grad()
def soft_threshold_(params: TensorList, threshold: float) -> None:
    """In place: ``w ← sign(w)·max(|w| − t, 0)``, the proximal map of ``t·|w|``; gives exact zeros.

    Computed as ``w − clamp(w, −t, t)``: entries with ``|w| <= t`` become exactly ``w − w = 0``.

    Example:
        >>> w = [torch.tensor([0.3, -0.05, -1.0])]
        >>> soft_threshold_(w, 0.1); [round(v, 6) for v in w[0].tolist()]
        [0.2, 0.0, -0.9]
    """
    if not params or threshold <= 0:
        return
    clipped = foreach_clamp_max(params, threshold)
    foreach_clamp_min_(clipped, -threshold)
    foreach_sub_(params, clipped)


@torch.no_grad()
def decoupled_step_(params: TensorList, lr: float, l1: float, l2: float) -> None:
    """In place: ``w ← w − lr·(l1·sign(w) + 2·l2·w)``, the penalty's gradient step outside the optimizer.

    With only ``l2`` this is AdamW's decay ``w ← w·(1 − lr·λ)`` with ``λ = 2·l2``.

    Example:
        >>> w = [torch.tensor([1.0, -2.0])]
        >>> decoupled_step_(w, lr=0.1, l1=0.0, l2=0.5); [round(v, 6) for v in w[0].tolist()]
        [0.9, -1.8]
    """
    if not params or lr == 0:
        return
    if l1 > 0:
        signs = foreach_sign(params)
    if l2 > 0:
        foreach_mul_(params, 1.0 - 2.0 * lr * l2)
    if l1 > 0:
        foreach_add_(params, signs, alpha=-lr * l1)


@torch.no_grad()
def max_norm_(param: Tensor, max_norm: float, dim: int = 0) -> None:
    """In place: rescale every slice along ``dim`` (one output unit's incoming weights) to L2 norm ≤ ``max_norm``.

    Example:
        >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> max_norm_(w, 1.0); [round(float(n), 4) for n in w.norm(dim=1)]
        [1.0, 0.5]
    """
    max_norm_inplace(param, max_norm, dim)


_UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}


def max_norm_inplace(param: Tensor, max_norm: float, dim: int = 0, check: bool = True) -> bool:
    """:func:`max_norm_` without its ``no_grad`` wrapper (the caller holds ``torch.no_grad()``).

    Same result as ``param.renorm_(2, dim, max_norm)`` to the last bit, cheaper when every unit is inside the
    ball: on the CPU, for float32/float64 kernels, the unit norms are computed first (about half the cost of
    ``renorm_``, which also multiplies every entry by its factor, 1.0 for units inside). If the largest norm is
    below ``max_norm`` by more than the norms' worst-case rounding error (``4·(n+2)·u`` relative, ``n`` entries
    per unit, ``u`` the unit roundoff), ``renorm_`` would multiply every entry by exactly 1.0, so the call is
    skipped; otherwise ``renorm_`` runs as before. Never on an accelerator: the test would be a host sync.
    ``check=False`` goes straight to ``renorm_`` (a caller that saw units outside at the last step).

    Returns True when ``renorm_`` (or the 1-D clamp) ran, False when the check proved it would change nothing.
    """
    if param.ndim < 2:
        norms = param.abs()
        param.mul_((max_norm / norms.clamp_min(1e-12)).clamp_max(1.0))
        return True
    u = _UNIT_ROUNDOFF.get(param.dtype)
    if check and u is not None and param.device.type == "cpu" and param.numel() > 0:
        n = param.numel() // max(1, param.shape[dim])
        largest = float(torch.linalg.vector_norm(param, dim=[d for d in range(param.ndim) if d != dim]).max())
        if largest * (1.0 + 4.0 * (n + 2) * u) < max_norm:  # NaN compares False: renorm_ below
            return False
    param.renorm_(2, dim, max_norm)
    return True
