"""Dropout-like modules: discovery, depth scaling and injection (pure helpers, no Lightning).

:class:`~lightning_reg.callbacks.ScheduledDropout` is a thin layer over these functions; they work on
any ``nn.Module`` in any training loop.

- :func:`find_dropout_modules` lists the modules whose rate can be scheduled: the ``nn.Dropout`` family,
  torchvision's ``StochasticDepth`` (attribute ``p``) and any module with a float ``drop_prob``
  attribute (timm's ``DropPath`` and ``DropBlock2d``), narrowed by type and name globs.
- Float attributes that models read at forward time and pass to the attention function
  (:data:`FLOAT_RATE_ATTRS`: Hugging Face's ``self.attention_dropout`` in ViT, Llama and most others,
  ``dropout_p``, ``activation_dropout`` ...) are targets too, named ``<module>.<attribute>``.
  :func:`unscheduled_rates` lists what looks like a rate but is not scheduled (other float ``*drop*``
  attributes, config fields no target was built from), for a warning.
- :func:`depth_rates` spreads a rate over ``L`` modules as NASNet's ScheduledDropPath does:
  ``rate · (l+1)/L`` for module ``l`` (0-based, in model order).
- Injection (adding dropout-like modules after chosen layer types) lives in
  :mod:`lightning_reg.core.injection`.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))
    >>> [t.name for t in find_dropout_modules(net)]
    ['2']
    >>> depth_rates(0.2, 2)
    [0.1, 0.2]
"""

from __future__ import annotations

import fnmatch
import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lightning_reg.core.schedules import Schedule, probe_points
from lightning_reg.errors import ConfigError

__all__ = [
    "DROPOUT_TYPES",
    "DROP_PROB",
    "FLOAT_RATE_ATTRS",
    "INJECTED_NAME",
    "RATE_ATTRS",
    "DropoutTarget",
    "InjectedDropout",
    "as_list",
    "check_rates",
    "depth_levels",
    "depth_rates",
    "find_dropout_modules",
    "float_rate_attributes",
    "injected_kind",
    "module_type_names",
    "rate_attribute",
    "unscheduled_rates",
]

#: The modules whose ``p`` is the drop rate, targeted by default.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)

#: The selector that means "any module with a float ``drop_prob`` attribute" (timm DropPath/DropBlock).
DROP_PROB = "drop_prob"

#: Float attributes that modules read at forward time as a drop rate (found in Hugging Face transformers'
#: attention, MLP and embedding code: ``dropout=0.0 if not self.training else self.attention_dropout``).
FLOAT_RATE_ATTRS: tuple[str, ...] = (
    "attention_dropout",
    "attn_dropout",
    "attn_dropout_p",
    "attn_drop",
    "dropout",
    "dropout_p",
    "dropout_prob",
    "activation_dropout",
    "hidden_dropout",
    "residual_dropout",
    "resid_pdrop",
    "embedding_dropout",
)

#: The selector that means "any float attribute of :data:`FLOAT_RATE_ATTRS`".
RATE_ATTRS = "rate_attrs"

#: Name of the child module :func:`inject_dropout` adds.
INJECTED_NAME = "injected_dropout"

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _stochastic_depth_type() -> type[nn.Module] | None:
    try:
        from torchvision.ops import StochasticDepth
    except Exception:  # noqa: BLE001 - torchvision is optional here; without it there is nothing to match
        return None
    return StochasticDepth


class InjectedDropout(nn.Dropout):
    """An ``nn.Dropout`` added by :func:`~lightning_reg.core.injection.inject_dropout`; its type marks it so
    injection is idempotent. Every injected kind has a class attribute ``injected_kind`` (see
    :func:`injected_kind`).

    Example:
        >>> InjectedDropout(0.2)
        InjectedDropout(p=0.2, inplace=False)
    """

    injected_kind = "dropout"


def injected_kind(module: nn.Module) -> str | None:
    """The kind (``"dropout"``, ``"gaussian_noise"``, ...) of a module added by injection, or None.

    Example:
        >>> injected_kind(InjectedDropout(0.1)), injected_kind(nn.Dropout(0.1))
        ('dropout', None)
    """
    kind = getattr(type(module), "injected_kind", None)
    return kind if isinstance(kind, str) else None


@dataclass
class DropoutTarget:
    """One schedulable module: its qualified ``name``, the ``module`` and the rate ``attr`` (``p`` or ``drop_prob``).

    Example:
        >>> class Attention(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.attention_dropout = 0.1  # a float the forward reads
        >>> net = nn.Sequential(nn.Dropout(0.2), Attention())
        >>> [(t.name, t.attr, t.get()) for t in find_dropout_modules(net)]
        [('0', 'p', 0.2), ('1.attention_dropout', 'attention_dropout', 0.1)]
        >>> find_dropout_modules(net)[1].set(0.3)
        >>> net[1].attention_dropout
        0.3
    """

    name: str
    module: nn.Module
    attr: str

    def get(self) -> float:
        return float(getattr(self.module, self.attr))

    def set(self, rate: float) -> None:
        setattr(self.module, self.attr, float(rate))


def rate_attribute(module: nn.Module) -> str | None:
    """The attribute holding ``module``'s drop rate (``"p"``, ``"drop_prob"`` or a class's ``rate_attr``), or None.

    Example:
        >>> rate_attribute(nn.Dropout2d(0.1)), rate_attribute(nn.ReLU())
        ('p', None)
    """
    own = getattr(type(module), "rate_attr", None)  # our noise modules name theirs (GaussianNoise: "stddev")
    if isinstance(own, str):
        return own
    sd = _stochastic_depth_type()
    if isinstance(module, DROPOUT_TYPES) or (sd is not None and isinstance(module, sd)):
        return "p"
    value = getattr(module, DROP_PROB, None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return DROP_PROB
    return None


def _is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) < 1.0


def float_rate_attributes(module: nn.Module) -> list[str]:
    """The :data:`FLOAT_RATE_ATTRS` that ``module`` holds as plain numbers in ``[0, 1)`` (not submodules).

    Example:
        >>> class Attention(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.attention_dropout = 0.1
        ...         self.dropout = nn.Dropout(0.1)  # a module: scheduled through its own `p`
        >>> float_rate_attributes(Attention())
        ['attention_dropout']
    """
    own = vars(module)
    return [a for a in FLOAT_RATE_ATTRS if a in own and _is_rate(own[a])]


def unscheduled_rates(model: nn.Module, targets: Sequence[DropoutTarget]) -> list[str]:
    """What looks like a drop rate in ``model`` but is not among ``targets``, as ``"name=value"`` strings.

    - float attributes whose name contains ``drop`` that are not :data:`FLOAT_RATE_ATTRS` (``drop_rate``,
      except construction-time ``*path_rate``): the model may or may not read them at forward time;
    - fields of a Hugging Face ``config`` (any ``module.config`` with ``to_dict()``) whose name contains
      ``dropout`` or ``pdrop`` and whose non-zero value no module rate of the model started from: code that
      reads ``config.<field>`` at forward time would keep it.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2))
        >>> net[0].drop_rate = 0.2
        >>> unscheduled_rates(net, [])
        ['0.drop_rate=0.2']
    """
    ids = {(id(t.module), t.attr) for t in targets}
    out: list[str] = []
    initial: set[float] = set()
    configs: dict[int, tuple[str, Callable[[], Mapping[str, Any]]]] = {}  # by id(config): (module name, to_dict)
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr.startswith("_") or "drop" not in attr.lower() or not _is_rate(value):
                continue
            if attr in FLOAT_RATE_ATTRS or attr in ("p", DROP_PROB):
                initial.add(round(float(value), 6))
                if (id(module), attr) not in ids and attr in FLOAT_RATE_ATTRS:
                    out.append(f"{name + '.' if name else ''}{attr}={value}")
            elif not attr.endswith("path_rate"):
                out.append(f"{name + '.' if name else ''}{attr}={value}")
        attr = rate_attribute(module)
        if attr is not None:
            initial.add(round(float(getattr(module, attr)), 6))
        config = vars(module).get("config")
        to_dict = getattr(config, "to_dict", None)
        if config is not None and callable(to_dict):
            configs.setdefault(id(config), (name, to_dict))
    for name, to_dict in configs.values():
        for key, value in sorted(to_dict().items()):
            if (
                ("dropout" in key or "pdrop" in key)
                and _is_rate(value)
                and value > 0
                and round(float(value), 6) not in initial
            ):
                out.append(f"{name + '.' if name else ''}config.{key}={value}")
    return out


def _type_names(module: nn.Module) -> set[str]:
    names = set()
    for cls in type(module).__mro__:
        names.add(cls.__name__)
        names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names


def _resolve(spec: str | type, option: str) -> str | type:
    """A type stays a type; ``"nn.X"``/``"torch.nn.X"``/``"pkg.mod.Class"`` import; a bare name stays a name."""
    if isinstance(spec, type):
        if not issubclass(spec, nn.Module):
            raise ConfigError(f"`{option}` entries must be nn.Module subclasses or their names; got {spec!r}.")
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"`{option}` entries must be module types or class names (e.g. 'ReLU'); got {spec!r}.")
    if "." not in spec:
        return spec
    path = "torch." + spec if spec.startswith("nn.") else spec
    mod_name, _, attr = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError):
        return attr  # match by class name; the "not in the model" check reports it if nothing matches
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ConfigError(f"`{option}` entries must name nn.Module subclasses; {spec!r} is {obj!r}.")
    return obj


def _matches(module: nn.Module, spec: str | type) -> bool:
    if isinstance(spec, type):
        return isinstance(module, spec)
    if spec == DROP_PROB:
        return rate_attribute(module) == DROP_PROB
    if spec == RATE_ATTRS:
        return bool(float_rate_attributes(module))
    return spec in _type_names(module)


def as_list(value: str | type | Iterable[str | type] | None, option: str) -> list[str | type]:
    """Normalize ``None``, one entry, or a sequence of entries into a list.

    Example:
        >>> as_list("ReLU", "inject"), as_list(None, "inject")
        (['ReLU'], [])
    """
    if value is None:
        return []
    if isinstance(value, (str, type)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise ConfigError(f"`{option}` must be a type name, a module type or a list of them; got {value!r}.") from None


def module_type_names(model: nn.Module) -> list[str]:
    """The sorted class names of ``model``'s submodules (for error messages)."""
    return sorted({type(m).__name__ for name, m in model.named_modules() if name})


def find_dropout_modules(
    model: nn.Module,
    modules: Sequence[str | type] | None = None,
    names: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> list[DropoutTarget]:
    """List the schedulable modules of ``model`` in model order (``named_modules``).

    Args:
        model: any module.
        modules: keep only modules of these types: types, class names (``"Dropout2d"``, ``"DropPath"``,
            ``"ViTAttention"``), ``"drop_prob"`` (any module with a float ``drop_prob``) or ``"rate_attrs"``
            (any module with a float of :data:`FLOAT_RATE_ATTRS`). None keeps every dropout-like module and
            every such float attribute.
        names: keep only modules whose qualified name matches one of these globs (``"blocks.*"``).
        exclude: drop modules whose qualified name matches one of these globs.

    Modules added by :func:`inject_dropout` are always kept: they exist to be scheduled.

    Example:
        >>> net = nn.Sequential(nn.Dropout(0.1), nn.Linear(2, 2), nn.Dropout2d(0.2))
        >>> [t.name for t in find_dropout_modules(net, modules=["Dropout2d"])]
        ['2']
    """
    specs = [_resolve(s, "modules") for s in as_list(modules, "modules")]
    out = []
    for name, module in model.named_modules():
        attr = rate_attribute(module) if name else None
        floats = float_rate_attributes(module)
        if attr is None and not floats:
            continue
        if injected_kind(module) is None:
            if names and not any(fnmatch.fnmatchcase(name, g) for g in names):
                continue
            if exclude and any(fnmatch.fnmatchcase(name, g) for g in exclude):
                continue
            if specs:
                typed = [s for s in specs if s != RATE_ATTRS and _matches(module, s)]
                if attr is not None and not typed:
                    attr = None
                if not typed and RATE_ATTRS not in specs:
                    floats = []
        if attr is not None:
            out.append(DropoutTarget(name, module, attr))
        prefix = f"{name}." if name else ""
        out += [DropoutTarget(f"{prefix}{a}", module, a) for a in floats]
    return out


def depth_levels(names: Sequence[str]) -> list[int]:
    """The depth level of each module: modules inside the same numbered block share one.

    A module's block is its qualified name up to the last numeric component (``net.blocks.3.drop_path1`` and
    ``net.blocks.3.drop_path2`` are both in ``net.blocks.3``; ``layer2.1.bn2.stochastic_depth`` is in
    ``layer2.1``). A module under no numbered container is a level of its own. Levels count from 0 in the
    order the blocks first appear (the model's module order).

    Example:
        >>> depth_levels(["blocks.1.drop_path1", "blocks.1.drop_path2", "blocks.2.drop_path1", "head_drop"])
        [0, 0, 1, 2]
    """
    keys: dict[str, int] = {}
    out = []
    for name in names:
        parts = name.split(".")
        numeric = [i for i, part in enumerate(parts) if part.isdigit()]
        key = ".".join(parts[: numeric[-1] + 1]) if numeric else name
        out.append(keys.setdefault(key, len(keys)))
    return out


def depth_rates(rate: float, n: int | Sequence[int], depth_scale: bool = True) -> list[float]:
    """Per-module rates: ``rate · (l+1)/L`` for depth level ``l`` of ``L`` (NASNet), or ``rate`` for all.

    ``n`` is the number of modules (one level each) or each module's level (:func:`depth_levels`), so that
    the two drop-paths of one transformer block get the same rate, as timm gives them.

    Example:
        >>> [round(r, 6) for r in depth_rates(0.2, 4)]
        [0.05, 0.1, 0.15, 0.2]
        >>> [round(r, 6) for r in depth_rates(0.2, [0, 0, 1, 1])]
        [0.1, 0.1, 0.2, 0.2]
        >>> depth_rates(0.2, 2, depth_scale=False)
        [0.2, 0.2]
    """
    levels = list(range(n)) if isinstance(n, int) else list(n)
    if not depth_scale:
        return [float(rate)] * len(levels)
    depth = max(levels, default=-1) + 1
    return [float(rate) * (level + 1) / depth for level in levels]


def check_rates(schedule: Schedule, horizon: int = 10_000) -> None:
    """Raise :class:`ConfigError` if ``schedule`` leaves ``[0, 1)`` anywhere in ``[0, horizon]``.

    Example:
        >>> from lightning_reg.core.schedules import Constant
        >>> check_rates(Constant(1.0))
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `schedule` must give drop rates in [0, 1); Constant(unit='step', value=1.0) gives 1.0 at step 0.
    """

    def bad(t: int) -> bool:
        value = float(schedule(t))
        return math.isnan(value) or not 0.0 <= value < 1.0

    previous = -1
    for t in probe_points(horizon):
        if bad(t):
            first = next(u for u in range(previous + 1, t + 1) if bad(u))  # report the first offending index
            raise ConfigError(
                f"`schedule` must give drop rates in [0, 1); {schedule!r} gives {float(schedule(first))!r} at "
                f"{schedule.unit} {first}."
            )
        previous = t
