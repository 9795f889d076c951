"""StochasticDepth: add per-sample residual-branch dropping to models that have none, and schedule its rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout
from lightning_reg.core.drop_path import BlockPolicy, BranchEnd, ResidualDrop, block_kinds, inject_stochastic_depth
from lightning_reg.core.schedules import ScheduleLike
from lightning_reg.errors import ConfigError


class StochasticDepth(ScheduledDropout):
    """Stochastic depth (Huang et al. 2016) for any residual model, as a Lightning callback.

    At ``setup`` (before the optimizer is built) it adds a :class:`~lightning_reg.core.drop_path.ResidualDrop`
    at the end of every residual block's branch (torchvision's ``BasicBlock``/``Bottleneck`` by default, or the
    ``blocks`` you name; see :mod:`lightning_reg.core.drop_path` for the protocol) and logs what it wrapped.
    Parameter names, ``state_dict`` keys and the optimizer are unchanged. In training each sample's branch is
    dropped with rate ``p_l`` and kept ones are scaled by ``1/(1 − p_l)``; eval is the identity.

    The rates are depth-scaled, ``p_l = rate · (l+1)/L`` for block ``l`` of ``L`` in model order (the paper's
    linear decay rule), and ``rate`` follows ``schedule`` over time exactly as in
    :class:`~lightning_reg.ScheduledDropout` (which this class is): a number, a
    :class:`~lightning_reg.core.schedules.Schedule` or a mapping such as ``{"name": "linear", "start": 0, "end": 0.2,
    "end_at": 10, "unit": "epoch"}``. Resume, DDP and gradient accumulation behave as there. Logged as
    ``reg/stochastic_depth_p`` (before depth scaling).

    Args:
        schedule: the rate of the deepest block over time, in ``[0, 1)``.
        blocks: ``{block type or class name: attribute path of the branch's last module, or a callable
            block -> module}``; ``None``: torchvision's blocks and any block with a ``residual_branch()`` method.
        names: only blocks whose qualified name matches one of these globs (``"net.layer4.*"``).
        depth_scale: the linear depth rule above (``False``: every block gets ``rate``).
        interval, log_name, log_every_n_steps, verbose: as in :class:`~lightning_reg.ScheduledDropout`.

    Example:
        >>> cb = StochasticDepth({"name": "linear", "start": 0.0, "end": 0.2, "end_at": 5, "unit": "epoch"})
        >>> cb.interval, cb.depth_scale
        ('epoch', True)
        >>> StochasticDepth(0.1, blocks={"mypkg.Block": "branch.2"}).blocks
        {'mypkg.Block': 'branch.2'}
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        blocks: BlockPolicy | None = None,
        names: Sequence[str] | None = None,
        depth_scale: bool = True,
        interval: str | None = None,
        log_name: str | None = "reg/stochastic_depth_p",
        log_every_n_steps: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            schedule,
            interval=interval,
            modules=[ResidualDrop],
            depth_scale=depth_scale,
            log_name=log_name,
            log_every_n_steps=log_every_n_steps,
            verbose=verbose,
        )
        if blocks is not None and (not isinstance(blocks, Mapping) or not blocks):
            raise ConfigError(
                "`blocks` must map block types to their residual branch end, e.g. {'BasicBlock': 'bn2'}; "
                f"got {blocks!r}."
            )
        self.blocks: dict[str | type, BranchEnd] | None = None if blocks is None else dict(blocks.items())
        self.block_names = [str(g) for g in names] if names else None
        self._wrapped: list[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(
            schedule=repr(self.schedule),
            interval=self.interval,
            depth_scale=self.depth_scale,
            blocks=None if self.blocks is None else sorted(str(k) for k in self.blocks),
            names=self.block_names,
        )

    @property
    def wrapped(self) -> list[str]:
        """Qualified names of the :class:`ResidualDrop` modules in the model (known after ``setup``)."""
        return list(self._wrapped)

    @override
    def _discover(self, pl_module: pl.LightningModule) -> None:
        added = inject_stochastic_depth(pl_module, p=self.schedule.at(0, 0), blocks=self.blocks, names=self.block_names)
        self._wrapped = [n for n, m in pl_module.named_modules() if isinstance(m, ResidualDrop)]
        if self.verbose and added:
            kinds = block_kinds(self.blocks)
            rank_zero_info(
                f"StochasticDepth: wrapped the residual branch of {len(added)} block(s) ({kinds}): "
                f"{', '.join(n.rsplit('.', 2)[0] for n in added)}. Parameter names, state_dict keys and the "
                "optimizer are unchanged."
            )
        super()._discover(pl_module)

    @override
    def run_summary(self) -> dict[str, Any]:
        return {**super().run_summary(), "wrapped": self.wrapped}


__all__ = ["StochasticDepth"]
