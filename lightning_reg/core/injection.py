"""Module injection: add dropout or noise after chosen layer types without changing parameter names (pure torch).

:func:`inject_dropout` adds an :class:`~lightning_reg.core.dropout.InjectedDropout` (or, by ``kind``, one of
:data:`INJECT_KINDS`: Keras' ``GaussianNoise``, ``GaussianDropout``, ``SpatialDropout``, ``AlphaDropout`` or
timm's ``DropBlock2d``, see :mod:`lightning_reg.core.noise`) after every module of the chosen types. The dropout becomes a child of the module it follows and runs in a forward hook, so parameter
names and ``state_dict`` keys stay exactly as they were (dropout has no parameters or buffers): checkpoints of
the model load with or without injection, and the optimizer is unaffected.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> inject_dropout(net, ["ReLU"], p=0.1)
    ['1.injected_dropout']
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lightning_reg._torch_internals import child_module
from lightning_reg.core.dropout import (
    _CONTAINERS,
    INJECTED_NAME,
    InjectedDropout,
    _matches,
    _resolve,
    as_list,
    injected_kind,
    module_type_names,
)
from lightning_reg.core.noise import DropBlock2d, GaussianDropout, GaussianNoise, SpatialDropout
from lightning_reg.errors import ConfigError, check_choice

__all__ = [
    "INJECT_KINDS",
    "InjectedAlphaDropout",
    "InjectedDropBlock2d",
    "InjectedGaussianDropout",
    "InjectedGaussianNoise",
    "InjectedSpatialDropout",
    "check_inject_options",
    "inject_dropout",
    "injected_child_name",
    "injected_names",
    "is_injected",
]


class InjectedGaussianNoise(GaussianNoise):
    """A :class:`~lightning_reg.core.noise.GaussianNoise` added by injection (rate attribute ``stddev``)."""

    injected_kind = "gaussian_noise"


class InjectedGaussianDropout(GaussianDropout):
    """A :class:`~lightning_reg.core.noise.GaussianDropout` added by injection."""

    injected_kind = "gaussian_dropout"


class InjectedSpatialDropout(SpatialDropout):
    """A :class:`~lightning_reg.core.noise.SpatialDropout` added by injection."""

    injected_kind = "spatial_dropout"


class InjectedAlphaDropout(nn.AlphaDropout):
    """An ``nn.AlphaDropout`` (Keras' ``AlphaDropout``, for SELU networks) added by injection."""

    injected_kind = "alpha_dropout"


class InjectedDropBlock2d(DropBlock2d):
    """A :class:`~lightning_reg.core.noise.DropBlock2d` (timm's semantics) added by injection."""

    injected_kind = "dropblock"


#: What ``kind=`` adds, and the extra options (``inject_options``) each kind takes.
INJECT_KINDS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "dropout": (InjectedDropout, ()),
    "gaussian_noise": (InjectedGaussianNoise, ()),
    "gaussian_dropout": (InjectedGaussianDropout, ()),
    "spatial_dropout": (InjectedSpatialDropout, ()),
    "alpha_dropout": (InjectedAlphaDropout, ()),
    "dropblock": (InjectedDropBlock2d, ("block_size", "gamma_scale")),
}


def injected_child_name(kind: str = "dropout") -> str:
    """The child name an injected module of ``kind`` gets (``injected_dropout``, ``injected_dropblock``, ...).

    Example:
        >>> injected_child_name("gaussian_noise")
        'injected_gaussian_noise'
    """
    return INJECTED_NAME if kind == "dropout" else f"injected_{kind}"


def check_inject_options(kind: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``kind`` and its ``options``; return the options as a dict.

    Example:
        >>> check_inject_options("dropblock", {"block_size": 3})
        {'block_size': 3}
    """
    check_choice("inject_kind", kind, tuple(INJECT_KINDS))
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"`inject_options` must be a mapping; got {options!r}.")
    allowed = INJECT_KINDS[kind][1]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"`inject_options` for inject_kind={kind!r} takes {list(allowed) or 'no options'}; got {unknown}."
        )
    out = dict(options)
    INJECT_KINDS[kind][0](0.0, **out)  # the constructor checks the values (one line naming the option)
    return out


def _apply_injected_dropout(module: nn.Module, args: tuple, output: object) -> object:
    return _apply_injected(INJECTED_NAME, module, args, output)


def _apply_injected(child: str, module: nn.Module, args: tuple, output: object) -> object:
    # Looked up by name (not captured) so deep copies of the model (EMA, SWA) use their own dropout.
    drop = child_module(module, child)
    if drop is None:
        return output
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"dropout injected after {type(module).__name__} needs a tensor output; it returned "
            f"{type(output).__name__}. Inject after a module that returns one tensor."
        )
    return drop(output)


def is_injected(module: nn.Module, kind: str = "dropout") -> bool:
    """True if :func:`inject_dropout` already added a module of ``kind`` after ``module``."""
    child = child_module(module, injected_child_name(kind))
    return child is not None and injected_kind(child) == kind


def inject_dropout(
    model: nn.Module,
    after: Sequence[str | type] | str | type,
    p: float = 0.0,
    skip_last: bool = False,
    kind: str = "dropout",
    options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Add an :class:`InjectedDropout` (or a module of ``kind``) after every module of the types in ``after``;
    return the new names.

    The dropout becomes the child ``injected_dropout`` (``injected_<kind>``) of the module it follows, and a forward hook
    applies it to that module's output, so parameter names and ``state_dict`` keys do not change.
    Calling it again on the same model adds nothing (already injected modules are skipped) and returns
    ``[]``.

    Args:
        model: any module.
        after: types or class names (``"ReLU"``, ``"nn.GELU"``, ``"mypkg.Block"``); each must match at
            least one module of ``model``.
        p: the initial rate of the new modules.
        skip_last: leave out the last matching module in model order (for ``after=["Linear"]``: no
            dropout on the logits).
        kind: one of :data:`INJECT_KINDS`; its rate (``p``, ``stddev`` for ``gaussian_noise``, ``drop_prob`` for
            ``dropblock``) starts at ``p``.
        options: the kind's other arguments (``dropblock``: ``block_size``, ``gamma_scale``).

    Raises:
        ConfigError: an entry of ``after`` matches no module (the message lists the model's module
            types), or it matches a container (``Sequential``, ``ModuleList``, ``ModuleDict``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> inject_dropout(net, ["Linear"], skip_last=True)
        ['0.injected_dropout', '2.injected_dropout']
        >>> inject_dropout(net, ["Linear"], skip_last=True)
        []
        >>> inject_dropout(net, ["ReLU"], kind="gaussian_noise", p=0.1)
        ['1.injected_gaussian_noise', '3.injected_gaussian_noise']
    """
    extra = check_inject_options(kind, options)
    cls = INJECT_KINDS[kind][0]
    child = injected_child_name(kind)
    specs = [_resolve(s, "inject") for s in as_list(after, "inject")]
    if not specs:
        raise ConfigError("`inject` must name at least one module type (e.g. ['ReLU']); got an empty list.")
    candidates = [(n, m) for n, m in model.named_modules() if n and injected_kind(m) is None]
    for spec in specs:
        hits = [(n, m) for n, m in candidates if _matches(m, spec)]
        label = spec.__name__ if isinstance(spec, type) else spec
        if not hits:
            raise ConfigError(
                f"`inject` names {label!r}, but the model has no module of that type. Module types in the "
                f"model: {', '.join(module_type_names(model))}."
            )
        for n, m in hits:
            if isinstance(m, _CONTAINERS):
                raise ConfigError(
                    f"`inject` cannot add dropout after the container {label!r} ({n!r}): it would change the "
                    "container's own forward. Name the layer type inside it instead (e.g. 'ReLU')."
                )
    chosen = [(n, m) for n, m in candidates if any(_matches(m, s) for s in specs)]
    if skip_last and chosen:
        chosen = chosen[:-1]
    added = []
    for name, module in chosen:
        if is_injected(module, kind):
            continue
        drop = cls(float(p), **extra)
        drop.train(module.training)  # a new module starts in train mode; follow the model (eval stays identity)
        module.add_module(child, drop)
        hook = _apply_injected_dropout if kind == "dropout" else functools.partial(_apply_injected, child)
        module.register_forward_hook(hook)
        added.append(f"{name}.{child}")
    return added


def injected_names(model: nn.Module, kind: str | None = None) -> list[str]:
    """Qualified names of the modules :func:`inject_dropout` added to ``model`` (of ``kind``, or of any kind)."""
    return [
        n
        for n, m in model.named_modules()
        if injected_kind(m) is not None and (kind is None or injected_kind(m) == kind)
    ]
