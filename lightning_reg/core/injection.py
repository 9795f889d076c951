"""Module injection: add dropout after chosen layer types without changing parameter names (pure torch).

:func:`inject_dropout` adds an :class:`~lightning_reg.core.dropout.InjectedDropout` after every module of the
chosen types. The dropout becomes a child of the module it follows and runs in a forward hook, so parameter
names and ``state_dict`` keys stay exactly as they were (dropout has no parameters or buffers): checkpoints of
the model load with or without injection, and the optimizer is unaffected.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> inject_dropout(net, ["ReLU"], p=0.1)
    ['1.injected_dropout']
"""

from __future__ import annotations

from collections.abc import Sequence

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
    module_type_names,
)
from lightning_reg.errors import ConfigError

__all__ = ["inject_dropout", "injected_names", "is_injected"]


def _apply_injected_dropout(module: nn.Module, args: tuple, output: object) -> object:
    # Looked up by name (not captured) so deep copies of the model (EMA, SWA) use their own dropout.
    drop = child_module(module, INJECTED_NAME)
    if drop is None:
        return output
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"dropout injected after {type(module).__name__} needs a tensor output; it returned "
            f"{type(output).__name__}. Inject after a module that returns one tensor."
        )
    return drop(output)


def is_injected(module: nn.Module) -> bool:
    """True if :func:`inject_dropout` already added a dropout after ``module``."""
    return isinstance(child_module(module, INJECTED_NAME), InjectedDropout)


def inject_dropout(
    model: nn.Module,
    after: Sequence[str | type] | str | type,
    p: float = 0.0,
    skip_last: bool = False,
) -> list[str]:
    """Add an :class:`InjectedDropout` after every module of the types in ``after``; return the new names.

    The dropout becomes the child ``injected_dropout`` of the module it follows, and a forward hook
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

    Raises:
        ConfigError: an entry of ``after`` matches no module (the message lists the model's module
            types), or it matches a container (``Sequential``, ``ModuleList``, ``ModuleDict``).

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> inject_dropout(net, ["Linear"], skip_last=True)
        ['0.injected_dropout', '2.injected_dropout']
        >>> inject_dropout(net, ["Linear"], skip_last=True)
        []
    """
    specs = [_resolve(s, "inject") for s in as_list(after, "inject")]
    if not specs:
        raise ConfigError("`inject` must name at least one module type (e.g. ['ReLU']); got an empty list.")
    candidates = [(n, m) for n, m in model.named_modules() if n and not isinstance(m, InjectedDropout)]
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
        if is_injected(module):
            continue
        drop = InjectedDropout(float(p))
        drop.train(module.training)  # a new module starts in train mode; follow the model (eval stays identity)
        module.add_module(INJECTED_NAME, drop)
        module.register_forward_hook(_apply_injected_dropout)
        added.append(f"{name}.{INJECTED_NAME}")
    return added


def injected_names(model: nn.Module) -> list[str]:
    """Qualified names of the dropout modules :func:`inject_dropout` added to ``model``."""
    return [n for n, m in model.named_modules() if isinstance(m, InjectedDropout)]
