"""Stochastic depth for residual blocks that have none: the pure drop and the module surgery (no Lightning).

:class:`~lightning_reg.callbacks.StochasticDepth` is a thin callback over these helpers; they work in any loop.

- :func:`drop_residual` drops whole samples of a residual branch: ``branch · mask / (1 − p)`` with one
  Bernoulli(1 − p) draw per sample, in training; the identity in eval or at ``p = 0``.
- :func:`inject_stochastic_depth` finds residual blocks and adds a :class:`ResidualDrop` at the *end of each
  block's residual branch*. The protocol: a block names the last module of its branch, whose output is the
  branch's output before the skip connection is added:

  - torchvision's ``BasicBlock`` → ``bn2`` and ``Bottleneck`` → ``bn3`` (:data:`TORCHVISION_BLOCKS`);
  - any block class with a method ``residual_branch(self) -> nn.Module`` returning that module;
  - or a ``blocks`` policy ``{type or class name: "attr.path" | callable(block) -> nn.Module}``.

  The :class:`ResidualDrop` becomes a child (``stochastic_depth``) of that module and a forward hook applies
  it to the module's output. It has no parameters or buffers, so parameter names, ``state_dict`` keys and the
  optimizer are unchanged: checkpoints load with or without it. Its rate attribute is ``drop_prob`` (as in
  timm's ``DropPath``), so :class:`~lightning_reg.ScheduledDropout` and the depth-scaled rates of
  :func:`lightning_reg.core.dropout.depth_rates` apply to it.

Example:
    >>> import torch, torchvision
    >>> net = torchvision.models.resnet18(num_classes=2)
    >>> names = inject_stochastic_depth(net, p=0.1)
    >>> len(names), names[0]
    (8, 'layer1.0.bn2.stochastic_depth')
    >>> sorted(net.state_dict()) == sorted(torchvision.models.resnet18(num_classes=2).state_dict())
    True
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_reg._torch_internals import child_module
from lightning_reg.core.dropout import module_type_names
from lightning_reg.errors import ConfigError, check_range

#: Name of the child module :func:`inject_stochastic_depth` adds to the last module of each residual branch.
INJECTED_NAME = "stochastic_depth"

BranchEnd = str | Callable[[nn.Module], nn.Module]
#: A ``blocks`` policy, ``{block type or class name: branch end}``. A union because ``Mapping``'s key type is
#: invariant: a ``dict[str, str]`` is a ``Mapping[str, BranchEnd]`` but not a ``Mapping[str | type, BranchEnd]``.
BlockPolicy = Mapping[str, BranchEnd] | Mapping[type, BranchEnd] | Mapping[str | type, BranchEnd]

#: The branch ends of torchvision's residual blocks (the last BatchNorm before ``out += identity``).
TORCHVISION_BLOCKS: dict[str, str] = {"BasicBlock": "bn2", "Bottleneck": "bn3"}


def drop_residual(x: Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample drop of a residual branch's output ``x`` with rate ``p``, scaled by ``1/(1 − p)`` in training.

    Example:
        >>> x = torch.ones(4, 3)
        >>> drop_residual(x, 0.5, training=False).equal(x)
        True
        >>> y = drop_residual(x, 0.5, True, torch.Generator().manual_seed(0))
        >>> sorted(set(y.flatten().tolist()))  # every row is all 0 (dropped) or all 2 (kept, scaled)
        [0.0, 2.0]
    """
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"the stochastic-depth rate must be in [0, 1); got {p!r}.")
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)
    return x * mask.div_(keep)


class ResidualDrop(nn.Module):
    """Stochastic depth on one residual branch: :func:`drop_residual` with rate ``drop_prob``.

    Example:
        >>> ResidualDrop(0.1)
        ResidualDrop(drop_prob=0.100)
        >>> ResidualDrop(0.1).eval()(torch.ones(2, 2)).tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(check_range("drop_prob", drop_prob, 0.0, 1.0, high_inclusive=False))

    @override
    def forward(self, x: Tensor) -> Tensor:
        return drop_residual(x, self.drop_prob, self.training)

    @override
    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def _apply_residual_drop(module: nn.Module, args: tuple, output: object) -> object:
    # Looked up by name, not captured: a deep copy of the model (EMA, SWA) uses its own ResidualDrop.
    drop = child_module(module, INJECTED_NAME)
    if drop is None:
        return output
    if not isinstance(output, Tensor):
        raise TypeError(
            f"stochastic depth at the end of a residual branch needs a tensor output; {type(module).__name__} "
            f"returned {type(output).__name__}. Name the branch's last tensor-returning module instead."
        )
    return drop(output)


def block_kinds(blocks: BlockPolicy | None) -> str:
    """The block types a policy names, for messages (``None``: torchvision's).

    Example:
        >>> block_kinds(None), block_kinds({nn.Sequential: "0", "mypkg.Block": "branch"})
        ('BasicBlock, Bottleneck', 'Sequential, mypkg.Block')
    """
    return ", ".join(k if isinstance(k, str) else k.__name__ for k in (blocks or TORCHVISION_BLOCKS))


def _type_matches(module: nn.Module, key: str | type) -> bool:
    if isinstance(key, type):
        return isinstance(module, key)
    names = {c.__name__ for c in type(module).__mro__} | {
        f"{c.__module__}.{c.__qualname__}" for c in type(module).__mro__
    }
    return key in names


def _branch_end(block: nn.Module, how: BranchEnd, label: str) -> nn.Module:
    if callable(how) and not isinstance(how, str):
        end = how(block)
    else:
        try:
            end = block.get_submodule(how)
        except AttributeError:
            children = ", ".join(n for n, _ in block.named_children())
            raise ConfigError(
                f"`blocks[{label!r}]` names {how!r}, which {type(block).__name__} does not have; its children are: "
                f"{children}."
            ) from None
    if not isinstance(end, nn.Module):
        raise ConfigError(f"`blocks[{label!r}]` must give the last module of the residual branch; got {end!r}.")
    return end


def find_residual_blocks(
    model: nn.Module, blocks: BlockPolicy | None = None, names: list[str] | None = None
) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(block name, block, branch end)`` for every residual block in model order (see the module docstring).

    Args:
        model: any module.
        blocks: policy ``{type or class name: attribute path or callable}``; ``None`` uses torchvision's blocks
            and any block with a ``residual_branch()`` method.
        names: keep only blocks whose qualified name matches one of these globs.

    Example:
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.branch = nn.Linear(4, 4)
        ...     def forward(self, x):
        ...         return x + self.branch(x)
        ...     def residual_branch(self):
        ...         return self.branch
        >>> [n for n, _, _ in find_residual_blocks(nn.Sequential(Block(), Block()))]
        ['0', '1']
    """
    policy: dict[str | type, BranchEnd] = dict((TORCHVISION_BLOCKS if blocks is None else blocks).items())
    if blocks is not None and not policy:
        raise ConfigError("`blocks` must map at least one block type to its residual branch end; got {}.")
    for key, end in policy.items():
        if not (isinstance(key, type) or (isinstance(key, str) and key)):
            raise ConfigError(f"`blocks` keys must be block types or class names; got {key!r}.")
        if not (callable(end) or (isinstance(end, str) and end)):
            raise ConfigError(f"`blocks[{key!r}]` must be an attribute path such as 'bn2' or a callable; got {end!r}.")
    found = []
    for name, module in model.named_modules():
        if not name:
            continue
        how: BranchEnd | None = next((h for k, h in policy.items() if _type_matches(module, k)), None)
        label = type(module).__name__
        if how is None and blocks is None and callable(getattr(module, "residual_branch", None)):
            how = lambda block: block.residual_branch()  # noqa: E731 - the documented protocol method
        if how is None:
            continue
        if names and not any(fnmatch.fnmatchcase(name, g) for g in names):
            continue
        found.append((name, module, _branch_end(module, how, label)))
    return found


def inject_stochastic_depth(
    model: nn.Module,
    p: float = 0.0,
    blocks: BlockPolicy | None = None,
    names: list[str] | None = None,
) -> list[str]:
    """Add a :class:`ResidualDrop` at the end of every residual block's branch; return the new modules' names.

    Idempotent: a branch that already has one is skipped (and not returned). Raises :class:`ConfigError`
    naming the model's module types when no block matches.

    Example:
        >>> import torchvision
        >>> net = torchvision.models.resnet18()
        >>> inject_stochastic_depth(net, 0.1, names=["layer4.*"])
        ['layer4.0.bn2.stochastic_depth', 'layer4.1.bn2.stochastic_depth']
        >>> inject_stochastic_depth(net, 0.1, names=["layer4.*"])
        []
    """
    check_range("p", p, 0.0, 1.0, high_inclusive=False)
    found = find_residual_blocks(model, blocks, names)
    if not found:
        wanted = block_kinds(blocks)
        raise ConfigError(
            f"stochastic depth found no residual block in {type(model).__name__}: it looks for {wanted}"
            f"{' and blocks with a residual_branch() method' if blocks is None else ''}"
            f"{f' named {names}' if names else ''}. Module types in the model: {', '.join(module_type_names(model))}. "
            "Name your block with `blocks={'MyBlock': 'last_layer_of_the_branch'}`."
        )
    by_end = {id(end): block_name for block_name, _, end in found}
    full = {id(m): n for n, m in model.named_modules()}
    added = []
    for _, _, end in found:
        if isinstance(child_module(end, INJECTED_NAME), ResidualDrop):
            continue
        if id(end) not in full or len([1 for b, _, e in found if e is end]) > 1:
            raise ConfigError(
                f"the residual branch end of {by_end[id(end)]!r} must be a unique submodule of the model."
            )
        drop = ResidualDrop(p)
        drop.train(end.training)
        end.add_module(INJECTED_NAME, drop)
        end.register_forward_hook(_apply_residual_drop)
        added.append(f"{full[id(end)]}.{INJECTED_NAME}")
    return added


__all__ = [
    "BlockPolicy",
    "BranchEnd",
    "INJECTED_NAME",
    "TORCHVISION_BLOCKS",
    "ResidualDrop",
    "block_kinds",
    "drop_residual",
    "find_residual_blocks",
    "inject_stochastic_depth",
]
