"""Every private torch name that lightning_reg relies on, in one place (Lightning's are in ``_lightning_internals``).

Kept apart from the Lightning internals so that the pure modules (``penalties``, ``dropout``,
``stochastic_depth``) import torch only. ``tests/test_internals_canary.py`` checks each name against the
installed torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

__all__ = [
    "CONV_TRANSPOSE_TYPES",
    "CONV_TYPES",
    "NORM_BASE_TYPES",
    "child_module",
    "foreach_add_",
    "foreach_clamp_max",
    "foreach_clamp_min_",
    "foreach_copy_",
    "foreach_mul_",
    "foreach_norm",
    "foreach_sign",
    "foreach_sub_",
]

#: Base classes of torch's batch/instance norm layers and of its convolutions (private in torch).
NORM_BASE_TYPES: tuple[type[nn.Module], ...] = (_NormBase,)
CONV_TYPES: tuple[type[nn.Module], ...] = (_ConvNd,)
CONV_TRANSPOSE_TYPES: tuple[type[nn.Module], ...] = (_ConvTransposeNd,)

# torch's fused multi-tensor ops (one kernel launch per dtype/device bucket instead of one per tensor): private
# names, used by the penalties, the proximal and decoupled steps, and SAM. Bound once here, so a call costs
# what ``torch._foreach_*`` costs (no wrapper), and a rename in torch fails one canary test.
foreach_add_ = torch._foreach_add_
foreach_clamp_max = torch._foreach_clamp_max
foreach_clamp_min_ = torch._foreach_clamp_min_
foreach_copy_ = torch._foreach_copy_
foreach_mul_ = torch._foreach_mul_
foreach_norm = torch._foreach_norm
foreach_sign = torch._foreach_sign
foreach_sub_ = torch._foreach_sub_


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
