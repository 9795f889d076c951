"""Every private torch name that lightning_reg relies on, in one place (Lightning's are in ``_lightning_internals``).

Kept apart from the Lightning internals so that the pure modules (``penalties``, ``dropout``,
``stochastic_depth``) import torch only. ``tests/test_internals_canary.py`` checks each name against the
installed torch.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

__all__ = ["CONV_TRANSPOSE_TYPES", "CONV_TYPES", "NORM_BASE_TYPES", "child_module"]

#: Base classes of torch's batch/instance norm layers and of its convolutions (private in torch).
NORM_BASE_TYPES: tuple[type[nn.Module], ...] = (_NormBase,)
CONV_TYPES: tuple[type[nn.Module], ...] = (_ConvNd,)
CONV_TRANSPOSE_TYPES: tuple[type[nn.Module], ...] = (_ConvTransposeNd,)


def child_module(module: nn.Module, name: str) -> nn.Module | None:
    """``module``'s direct child called ``name``, or None.

    Reads the private ``nn.Module._modules`` dict: it runs inside forward hooks, where ``getattr`` (which also
    searches parameters and buffers, and raises on a miss) costs more.

    Example:
        >>> child_module(nn.Sequential(nn.ReLU()), "0")
        ReLU()
        >>> child_module(nn.ReLU(), "drop") is None
        True
    """
    return module._modules.get(name)
