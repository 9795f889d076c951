"""Weight penalties and constraints as pure functions: parameter selection, values, in-place updates.

Convention (Keras'): the penalty is ``l1·Σ|w| + l2·Σw²`` (no ½ factor), so its gradient is
``l1·sign(w) + 2·l2·w``. Everything here works on plain ``nn.Module``/tensor lists and knows nothing
about Lightning; :class:`~lightning_reg.callbacks.WeightPenalty`, :class:`~lightning_reg.callbacks.MaxNorm`
and :class:`~lightning_reg.PenaltyLossMixin` are thin layers over it.

Selection rules (shared by all three):

- ``include=None`` selects the *kernels* of :data:`KERNEL_TYPES` (Linear, Bilinear, Conv*/ConvTranspose*,
  Embedding, EmbeddingBag, MultiheadAttention, RNN/LSTM/GRU): parameters with ``ndim >= 2`` owned
  directly by such a module. Biases, normalization layers and other 1-D parameters are left out, as
  Keras' ``kernel_regularizer`` does.
- ``include=[...]`` replaces that default. A *module type* entry (a class, or a name such as ``"Linear"``,
  ``"nn.Conv2d"``, ``"torch.nn.Embedding"``, ``"my_pkg.MyLayer"``) selects the kernels (``ndim >= 2``) of
  modules of that type; any other string is an ``fnmatch`` glob on the full parameter name
  (``"head.*"``, ``"*.bias"``) and selects exactly what it matches, 1-D or not.
- ``exclude=[...]`` removes parameters: a type entry removes every parameter owned by such modules, a
  glob removes what it matches.
- The default selection also leaves out whatever a module lists in its own ``no_weight_decay()`` (timm
  models name ``pos_embed``, ``cls_token``, ``dist_token`` there; the names are ``fnmatch`` patterns relative
  to that module, as in timm's ``param_groups_weight_decay``). Positional embeddings and class tokens that
  are plain ``nn.Parameter`` of a model (not owned by a kernel type) are out anyway.
- ``embeddings=False`` leaves out the weights of ``nn.Embedding``/``nn.EmbeddingBag`` (word, position and
  token-type embeddings of a Hugging Face model), including a language-model head tied to them: a tied
  tensor is one parameter, listed once under its first owner in model order, so it is penalized once.
  The default (``True``) penalizes them, as Hugging Face's own ``Trainer`` decays them.

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

import fnmatch
import importlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_reg._torch_internals import (
    CONV_TRANSPOSE_TYPES,
    CONV_TYPES,
    NORM_BASE_TYPES,
    foreach_add_,
    foreach_clamp_max,
    foreach_clamp_min_,
    foreach_mul_,
    foreach_norm,
    foreach_sign,
    foreach_sub_,
)
from lightning_reg.core.schedules import Schedule, ScheduleLike, as_schedule
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

#: Module types whose ``ndim >= 2`` parameters are penalized by default ("kernels").
KERNEL_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    *CONV_TYPES,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.MultiheadAttention,
    nn.RNNBase,
)
#: Normalization layers: never selected by a type entry of ``include`` (their parameters are 1-D anyway).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    *NORM_BASE_TYPES,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
MODES = ("gradient", "proximal", "decoupled")

Selector = type | str
#: What torch's fused ``_foreach_*`` ops accept: a list or a tuple of tensors (not any sequence).
TensorList = list[Tensor] | tuple[Tensor, ...]


# --------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------


def _resolve_type(entry: str) -> type[nn.Module] | None:
    """``"Linear"``, ``"nn.Linear"``, ``"torch.nn.Linear"`` or ``"pkg.mod.Cls"`` -> the class, else None."""
    if any(ch in entry for ch in "*?["):
        return None
    short = entry.removeprefix("torch.nn.").removeprefix("nn.")
    cls = getattr(nn, short, None) if "." not in short else None
    if cls is None and "." in entry:
        module_name, _, attr = entry.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr, None)
        except ImportError:
            cls = None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


@dataclass(frozen=True)
class Selectors:
    """Parsed ``include``/``exclude`` entries: module types and parameter-name globs.

    Example:
        >>> sel = Selectors.parse("include", ["nn.Linear", "head.*"])
        >>> sel.entries()
        ['Linear', 'head.*']
        >>> lin = nn.Linear(2, 2)
        >>> [sel.matches(n, lin, kernels_only_for_types=True, param=p) for n, p in lin.named_parameters()]
        [True, False]
    """

    types: tuple[type[nn.Module], ...] = ()
    globs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, name: str, entries: Sequence[Selector] | Selector | None) -> Selectors | None:
        """Validate a list of types/strings; ``None`` stays ``None``.

        Example:
            >>> Selectors.parse("include", ["Linear", "head.*"]).globs
            ('head.*',)
        """
        if entries is None:
            return None
        if isinstance(entries, (str, type)):
            entries = [entries]
        if not isinstance(entries, Iterable):
            raise ConfigError(f"`{name}` must be a list of module types or parameter-name globs; got {entries!r}.")
        types: list[type[nn.Module]] = []
        globs: list[str] = []
        for i, entry in enumerate(entries):
            if isinstance(entry, type) and issubclass(entry, nn.Module):
                types.append(entry)
            elif isinstance(entry, str) and entry:
                resolved = _resolve_type(entry)
                if resolved is not None:
                    types.append(resolved)
                else:
                    globs.append(entry)
            else:
                raise ConfigError(
                    f"`{name}[{i}]` must be an nn.Module subclass, a type name such as 'Linear' or a parameter-name "
                    f"glob such as 'head.*'; got {entry!r}."
                )
        return cls(tuple(types), tuple(globs))

    def matches(self, name: str, module: nn.Module, *, kernels_only_for_types: bool, param: Tensor) -> bool:
        if any(fnmatch.fnmatchcase(name, g) for g in self.globs):
            return True
        if self.types and isinstance(module, self.types):
            return not kernels_only_for_types or _is_kernel(param)
        return False

    def entries(self) -> list[str]:
        return [t.__name__ for t in self.types] + list(self.globs)


def _is_kernel(param: Tensor) -> bool:
    return param.ndim >= 2


EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def no_weight_decay_patterns(model: nn.Module) -> list[str]:
    """Full-name ``fnmatch`` patterns from every submodule's ``no_weight_decay()`` (timm's convention).

    Example:
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        ...     def no_weight_decay(self):
        ...         return {"pos_embed"}
        >>> no_weight_decay_patterns(nn.Sequential(Net()))
        ['0.pos_embed']
    """
    out: list[str] = []
    for mod_name, module in model.named_modules():
        fn = getattr(module, "no_weight_decay", None)
        if not callable(fn):
            continue
        names = fn()
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ConfigError(f"{type(module).__name__}.no_weight_decay() must return parameter names; got {names!r}.")
        out += sorted(f"{mod_name}.{n}" if mod_name else str(n) for n in names)
    return out


def owned_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter, nn.Module]]:
    """Every trainable parameter with its full name and the module that owns it directly (tied ones once)."""
    out = []
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for p_name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            out.append((f"{mod_name}.{p_name}" if mod_name else p_name, param, module))
    return out


def describe_parameters(model: nn.Module, limit: int = 40) -> str:
    """One line per trainable parameter (``name (Owner, shape)``), for error messages."""
    rows = [f"{n} ({type(m).__name__}, {tuple(p.shape)})" for n, p, m in owned_parameters(model)]
    if not rows:
        return "(the model has no trainable parameters)"
    extra = f"; ... and {len(rows) - limit} more" if len(rows) > limit else ""
    return "; ".join(rows[:limit]) + extra


def select_parameters(
    model: nn.Module,
    include: Sequence[Selector] | Selectors | None = None,
    exclude: Sequence[Selector] | Selectors | None = None,
    embeddings: bool = True,
) -> list[tuple[str, nn.Parameter, nn.Module]]:
    """The ``(name, parameter, owner)`` triples chosen by the selection rules (see the module docstring).

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
        >>> [n for n, _, _ in select_parameters(m, exclude=["Conv2d"])]
        ['3.weight']
    """
    inc = include if isinstance(include, Selectors) or include is None else Selectors.parse("include", include)
    exc = exclude if isinstance(exclude, Selectors) or exclude is None else Selectors.parse("exclude", exclude)
    chosen = []
    nwd = no_weight_decay_patterns(model) if inc is None else []
    # By identity over every owner: a head tied to an embedding is the same tensor, wherever it comes first.
    emb_ids = (
        set()
        if embeddings
        else {id(p) for m in model.modules() if isinstance(m, EMBEDDING_TYPES) for p in m.parameters(recurse=False)}
    )
    for name, param, module in owned_parameters(model):
        if inc is None:
            keep = (
                isinstance(module, KERNEL_TYPES)
                and not isinstance(module, NORM_TYPES)
                and _is_kernel(param)
                and not any(fnmatch.fnmatchcase(name, pat) for pat in nwd)
            )
        else:
            keep = inc.matches(name, module, kernels_only_for_types=True, param=param)
        if keep and exc is not None and exc.matches(name, module, kernels_only_for_types=False, param=param):
            keep = False
        if keep and id(param) in emb_ids:
            keep = False
        if keep:
            chosen.append((name, param, module))
    return chosen


def selection_summary(model: nn.Module, selected: Iterable[Tensor]) -> str:
    """Counts per owning module type of the selected and the left-out parameters, readable for any model size.

    Example:
        >>> m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        >>> print(selection_summary(m, [p for _, p, _ in select_parameters(m)]))
        2 tensors, 48 parameters: Linear 2 (48); left out 4 tensors, 26 parameters: LayerNorm 2 (16), Linear bias 2 (10)
    """
    ids = {id(p) for p in selected}
    sel: dict[str, list[int]] = {}
    out: dict[str, list[int]] = {}
    for name, param, module in owned_parameters(model):
        kind = type(module).__name__
        if id(param) in ids:
            bucket = sel
        else:
            bucket = out
            if name.endswith(".bias") and not isinstance(module, NORM_TYPES):
                kind += " bias"
        bucket.setdefault(kind, [0, 0])
        bucket[kind][0] += 1
        bucket[kind][1] += param.numel()

    def fmt(b: dict[str, list[int]]) -> str:
        n, numel = sum(v[0] for v in b.values()), sum(v[1] for v in b.values())
        parts = ", ".join(f"{k} {v[0]} ({v[1]:,})" for k, v in sorted(b.items(), key=lambda kv: (-kv[1][1], kv[0])))
        return f"{n} tensors, {numel:,} parameters" + (f": {parts}" if parts else "")

    return fmt(sel) + (f"; left out {fmt(out)}" if out else "")


def unit_dim(module: nn.Module) -> int:
    """The dimension that indexes output units: 0 for Linear/Conv/Embedding rows, 1 for ConvTranspose kernels."""
    return 1 if isinstance(module, CONV_TRANSPOSE_TYPES) else 0


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
