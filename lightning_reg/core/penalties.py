"""Weight penalties and constraints as pure functions: parameter selection, values, in-place updates.

Convention (Keras'): the penalty is ``l1·Σ|w| + l2·Σw²`` (no ½ factor), so its gradient is
``l1·sign(w) + 2·l2·w``. Everything here works on plain ``nn.Module``/tensor lists and knows nothing
about Lightning; :class:`~lightning_reg.callbacks.WeightPenalty`, :class:`~lightning_reg.callbacks.MaxNorm`
and :class:`~lightning_reg.PenaltyLossMixin` are thin layers over it.

Parameter selection (``include``, ``exclude``, ``embeddings``, ``no_weight_decay()``) is in
:mod:`lightning_reg.core.selection`; its names are re-exported here.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    >>> [name for name, _, _ in select_parameters(model)]
    ['0.weight', '2.weight']
    >>> [name for name, _, _ in select_parameters(model, include=["*.weight"], exclude=["LayerNorm"])]
    ['0.weight', '2.weight']
    >>> w = [torch.tensor([-3.0, 0.5, 2.0])]
    >>> round(float(penalty_value(w, w, l1=0.1, l2=0.01)), 6)  # 0.1·5.5 + 0.01·13.25
    0.6825
    >>> soft_threshold_(w, 1.0); w[0].tolist()
    [-2.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_reg._torch_internals import (
    foreach_add_,
    foreach_clamp_max,
    foreach_clamp_min_,
    foreach_mul_,
    foreach_norm,
    foreach_sign,
    foreach_sub_,
)
from lightning_reg.core.schedules import Schedule, ScheduleLike, as_schedule
from lightning_reg.core.selection import (
    EMBEDDING_TYPES,
    KERNEL_TYPES,
    NORM_TYPES,
    Selector,
    Selectors,
    describe_parameters,
    no_weight_decay_patterns,
    owned_parameters,
    select_parameters,
    selection_summary,
    unit_dim,
)
from lightning_reg.errors import ConfigError, check_choice, check_non_negative

__all__ = [
    "EMBEDDING_TYPES",
    "KERNEL_TYPES",
    "MODES",
    "NORM_TYPES",
    "PenalizedParam",
    "PenaltySpec",
    "ScheduleLike",
    "Selector",
    "Selectors",
    "TensorList",
    "add_penalty_grad_",
    "check_mode",
    "count_zeros",
    "decoupled_step_",
    "describe_parameters",
    "l1_norm",
    "max_norm_",
    "max_norm_inplace",
    "no_weight_decay_patterns",
    "owned_parameters",
    "penalty_grad_inplace",
    "penalty_value",
    "select_parameters",
    "selection_summary",
    "soft_threshold_",
    "sq_l2_norm",
    "unit_dim",
]

MODES = ("gradient", "proximal", "decoupled")

#: What torch's fused ``_foreach_*`` ops accept: a list or a tuple of tensors (not any sequence).
TensorList = list[Tensor] | tuple[Tensor, ...]


# --------------------------------------------------------------------------------------------------
# Coefficients: a validated spec shared by the callback and the mixin
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PenalizedParam:
    """One selected parameter with its (unscheduled) coefficients and its output-unit dimension.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ConvTranspose2d(1, 2, 3))
        >>> [(p.name, p.l2, p.unit_dim, tuple(p.param.shape)) for p in PenaltySpec(l2=1e-4).resolve(model)]
        [('0.weight', 0.0001, 0, (3, 4)), ('1.weight', 0.0001, 1, (1, 2, 3, 3))]
    """

    name: str
    param: nn.Parameter
    l1: float
    l2: float
    unit_dim: int = 0


def _check_groups(groups: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise ConfigError(
            "`groups` must map a parameter-name glob or module type to coefficients, e.g. "
            f"{{'head.*': {{'l2': 1e-3}}}}; got {groups!r}."
        )
    out: dict[str, dict[str, float]] = {}
    for key, coefs in groups.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"`groups` keys must be parameter-name globs or module type names; got {key!r}.")
        if not isinstance(coefs, Mapping) or not coefs or set(coefs) - {"l1", "l2"}:
            raise ConfigError(
                f"`groups[{key!r}]` must be a mapping with keys among 'l1', 'l2' (e.g. {{'l2': 1e-3}}); got {coefs!r}."
            )
        out[key] = {k: check_non_negative(f"groups[{key!r}].{k}", v) for k, v in coefs.items()}
    return out


class PenaltySpec:
    """Validated coefficients, selection and schedule; resolves to :class:`PenalizedParam` on a model.

    The effective coefficients at a step are ``base × schedule.at(step, epoch)``: the schedule is a
    multiplier (e.g. ``Linear(0, 1, end_at=1000)`` warms the penalty up from zero).

    Args:
        l1, l2: base coefficients (>= 0), Keras convention ``l1·Σ|w| + l2·Σw²``.
        include, exclude: selection (see the module docstring).
        groups: per-group overrides ``{glob or type name: {"l1": a, "l2": b}}``; the first matching key
            wins; a key that matches no selected parameter is an error (a typo otherwise goes unnoticed).
        schedule: multiplier schedule: a :class:`~lightning_reg.core.schedules.Schedule`, a number, a mapping
            ``{"name": "linear", ...}`` or a callable ``t -> float``; ``None`` means 1.
        embeddings: select the weights of ``nn.Embedding``/``EmbeddingBag`` layers (and heads tied to them).

    Example:
        >>> from torch import nn
        >>> spec = PenaltySpec(l2=1e-4, groups={"1.*": {"l2": 1e-3}})
        >>> [(p.name, p.l2) for p in spec.resolve(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))]
        [('0.weight', 0.0001), ('1.weight', 0.001)]
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        groups: Mapping[str, Mapping[str, float]] | None = None,
        schedule: ScheduleLike | None = None,
        embeddings: bool = True,
    ) -> None:
        if not isinstance(embeddings, bool):
            raise ConfigError(f"`embeddings` must be True or False; got {embeddings!r}.")
        self.embeddings = embeddings
        self.l1 = check_non_negative("l1", l1)
        self.l2 = check_non_negative("l2", l2)
        self.include = Selectors.parse("include", include)
        self.exclude = Selectors.parse("exclude", exclude)
        self.groups = _check_groups(groups)
        self._group_selectors: dict[str, Selectors] = {
            k: Selectors.parse(f"groups[{k!r}]", [k]) or Selectors() for k in self.groups
        }
        self.schedule: Schedule | None = None if schedule is None else as_schedule(schedule, "schedule")

    @property
    def any_l1(self) -> bool:
        return self.l1 > 0 or any(g.get("l1", 0.0) > 0 for g in self.groups.values())

    @property
    def any_l2(self) -> bool:
        return self.l2 > 0 or any(g.get("l2", 0.0) > 0 for g in self.groups.values())

    def scale_at(self, step: int, epoch: int) -> float:
        """The schedule multiplier at a trainer position (1.0 without a schedule)."""
        if self.schedule is None:
            return 1.0
        value = self.schedule.at(step, epoch)
        if not value >= 0.0:  # also catches NaN
            raise ConfigError(f"`schedule` must give values >= 0; it gave {value!r} at step {step}, epoch {epoch}.")
        return value

    def resolve(self, model: nn.Module, owner: str = "WeightPenalty") -> list[PenalizedParam]:
        """Select parameters and attach coefficients; raises :class:`ConfigError` if nothing matches."""
        chosen = select_parameters(model, self.include, self.exclude, embeddings=self.embeddings)
        if not chosen:
            rule = (
                f"include={self.include.entries()}"
                if self.include is not None
                else "the default (kernels of Linear/Conv/Embedding/attention/RNN layers)"
            )
            if self.exclude is not None:
                rule += f", exclude={self.exclude.entries()}"
            raise ConfigError(
                f"{owner}: the parameter selection ({rule}) matches no parameter of {type(model).__name__}. "
                f"Its trainable parameters are: {describe_parameters(model)}. "
                "Set `include` to module types (e.g. 'Linear') or parameter-name globs (e.g. 'net.*.weight')."
            )
        used: Counter[str] = Counter()
        out = []
        for name, param, module in chosen:
            l1, l2 = self.l1, self.l2
            for key, sel in self._group_selectors.items():
                if sel.matches(name, module, kernels_only_for_types=False, param=param):
                    l1 = self.groups[key].get("l1", l1)
                    l2 = self.groups[key].get("l2", l2)
                    used[key] += 1
                    break
            out.append(PenalizedParam(name, param, l1, l2, unit_dim(module)))
        unused = [k for k in self.groups if not used[k]]
        if unused:
            raise ConfigError(
                f"{owner}: `groups` key(s) {unused} match no selected parameter. Selected parameters: "
                f"{', '.join(n for n, _, _ in chosen)}."
            )
        return out


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


def check_mode(mode: str) -> str:
    """Validate ``mode`` (one of :data:`MODES`)."""
    return check_choice("mode", mode, MODES)
