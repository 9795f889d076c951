"""Parameter selection for the penalties and constraints: which tensors of a model they act on.

Selection rules (shared by every penalty and constraint):

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
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from lightning_reg._torch_internals import CONV_TRANSPOSE_TYPES, CONV_TYPES, NORM_BASE_TYPES
from lightning_reg.errors import ConfigError

__all__ = [
    "EMBEDDING_TYPES",
    "KERNEL_TYPES",
    "NORM_TYPES",
    "Selector",
    "Selectors",
    "describe_parameters",
    "no_weight_decay_patterns",
    "owned_parameters",
    "select_parameters",
    "selection_summary",
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

Selector = type | str

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
        >>> import torch
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
