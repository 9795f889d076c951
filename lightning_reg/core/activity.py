"""Activity regularization (Keras' ``activity_regularizer``): an L1/L2 penalty on chosen modules' outputs.

Keras adds ``(l1·Σ|a| + l2·Σa²) / batch`` to the loss for each output ``a`` of a regularized layer (the sum over
the whole output, divided by its first dimension). Its gradient with respect to the output is
``(l1·sign(a) + 2·l2·a) / batch``: :func:`activity_grad` is what a tensor hook adds to the output's gradient, so
that the penalty acts without touching the user's loss.

Example:
    >>> a = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    >>> float(activity_penalty(a, l1=0.5, l2=0.25))  # (0.5·6 + 0.25·14) / 2
    3.25
    >>> activity_grad(a, l1=0.5, l2=0.25).tolist()  # (0.5·sign(a) + 0.5·a) / 2
    [[0.5, -0.75], [0.0, 1.0]]
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_reg.core.selection import Selector, Selectors
from lightning_reg.errors import ConfigError

__all__ = ["activity_grad", "activity_penalty", "select_modules"]


def _batch(output: Tensor) -> float:
    return float(output.shape[0]) if output.ndim > 0 and output.shape[0] > 0 else 1.0


def activity_penalty(output: Tensor, l1: float, l2: float) -> Tensor:
    """``(l1·Σ|a| + l2·Σa²) / batch``, Keras' activity regularization loss of one output (differentiable)."""
    total = torch.zeros((), dtype=output.dtype, device=output.device)
    if l1 > 0:
        total = total + l1 * output.abs().sum()
    if l2 > 0:
        total = total + l2 * output.square().sum()
    return total / _batch(output)


def activity_grad(output: Tensor, l1: float, l2: float) -> Tensor:
    """``(l1·sign(a) + 2·l2·a) / batch``: the gradient of :func:`activity_penalty` with respect to the output."""
    scale = 1.0 / _batch(output)
    if l1 > 0 and l2 > 0:
        return torch.sign(output).mul_(l1 * scale).add_(output, alpha=2.0 * l2 * scale)
    if l1 > 0:
        return torch.sign(output).mul_(l1 * scale)
    return output.mul(2.0 * l2 * scale)


def select_modules(model: nn.Module, modules: Sequence[Selector] | Selectors) -> list[tuple[str, nn.Module]]:
    """The submodules of ``model`` chosen by ``modules``: module types (``"ReLU"``, ``nn.Linear``) or ``fnmatch``
    globs on the module names (``"net.1"``, ``"encoder.*.act"``); an empty selection is a :class:`ConfigError`.

    Example:
        >>> [n for n, _ in select_modules(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), ["ReLU", "2"])]
        ['1', '2']
    """
    sel = modules if isinstance(modules, Selectors) else Selectors.parse("modules", modules)
    if sel is None or not (sel.types or sel.globs):
        raise ConfigError("`modules` must list module types (e.g. 'ReLU') or module-name globs; got none.")
    chosen = [
        (name, m)
        for name, m in model.named_modules()
        if name and ((sel.types and isinstance(m, sel.types)) or any(fnmatch.fnmatchcase(name, g) for g in sel.globs))
    ]
    if not chosen:
        listed = "; ".join(f"{n} ({type(m).__name__})" for n, m in list(model.named_modules())[1:41])
        raise ConfigError(
            f"`modules` ({sel.entries()}) matches no submodule of {type(model).__name__}. Its submodules are: "
            f"{listed or '(none)'}."
        )
    return chosen
