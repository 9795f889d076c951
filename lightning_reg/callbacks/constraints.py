"""MaxNorm: the max-norm constraint as a Lightning callback (the math is in :mod:`lightning_reg.core.penalties`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_reg.callbacks._penalty_hooks import _group_by_optimizer, _StepHooksMixin, _summary_line
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.penalties import (
    PenaltySpec,
    Selector,
    max_norm_inplace,
)
from lightning_reg.errors import check_range

# MaxNorm: steps a kernel skips the "all units inside?" check after a check found units outside.
_RECHECK_EVERY = 8


class MaxNorm(_StepHooksMixin, pl.Callback):
    """Max-norm constraint: after every optimizer step, each unit's incoming weight vector gets norm ≤ ``max_norm``.

    As in the dropout paper (Srivastava et al. 2014), where dropout plus max-norm (c ≈ 3–4) gave the best
    MNIST results, and Keras' ``MaxNorm`` constraint. A "unit" is a row of a Linear weight (one output
    neuron), an output channel of a Conv kernel (dim 1 for ConvTranspose, whose kernels are stored
    ``(in, out, ...)``), one embedding vector of an Embedding. Vectors already inside the ball are untouched.

    Same selection rules as :class:`WeightPenalty` (kernels of Linear/Conv/Embedding-like layers by default;
    ``include``/``exclude`` take module types and parameter-name globs). It runs as a step post-hook on each
    optimizer, for the parameters that optimizer owns, in automatic and manual optimization and on every
    DDP rank (the weights stay identical). Logs ``reg/max_unit_norm`` (largest unit norm after the step).

    Args:
        max_norm: the radius (> 0).
        include: module types / names or parameter-name globs (replaces the default selection).
        exclude: module types / names or parameter-name globs to leave out.
        log_every_n_steps: logging period in optimizer steps; ``None`` follows the trainer; ``0`` disables.
        embeddings: constrain embedding vectors too (default ``True``), as :class:`WeightPenalty`.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning_reg import MaxNorm
        >>> trainer = pl.Trainer(callbacks=[MaxNorm(max_norm=3.0)], max_epochs=1, logger=False)
        >>> MaxNorm(3.0).state_key
        "MaxNorm{'max_norm': 3.0, 'include': None, 'exclude': None}"
    """

    def __init__(
        self,
        max_norm: float = 3.0,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        self.max_norm = check_range("max_norm", max_norm, 0.0, None, low_inclusive=False)
        # Validates include/exclude with the same rules as the penalties (coefficients unused).
        self.spec = PenaltySpec(include=include, exclude=exclude, embeddings=embeddings)
        self._init_common(include, exclude, log_every_n_steps)
        self._plans: dict[int, list[tuple[Tensor, int]]] = {}
        self._backoff: dict[int, int] = {}

    @property
    @override
    def state_key(self) -> str:
        return memo_state_key(
            self,
            (self.max_norm, self._include, self._exclude, self.spec.embeddings),
            lambda: self._generate_state_key(
                max_norm=self.max_norm,
                **self._selector_key(),
                **({} if self.spec.embeddings else {"embeddings": False}),
            ),
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._selected = self.spec.resolve(pl_module, owner="MaxNorm")
        buckets, orphans = _group_by_optimizer(trainer.optimizers, self._selected, "MaxNorm")
        dims = {id(p.param): p.unit_dim for p in self._selected}
        self._plans = {k: [(p, dims[id(p)]) for b in v for p in b.params] for k, v in buckets.items()}
        self._backoff = {}
        self._register_post_hooks(trainer.optimizers)
        self._final = None
        rank_zero_info(f"MaxNorm(max_norm={self.max_norm}): constraining {_summary_line(pl_module, self._selected)}.")
        if orphans:
            rank_zero_warn(f"MaxNorm: selected parameters not in any optimizer are not constrained: {orphans}.")

    @override
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        plan = self._plans.get(id(optimizer))
        if plan is None:
            return
        backoff = self._backoff
        with torch.no_grad():  # one context for all kernels
            for param, dim in plan:
                # A kernel with units outside the ball at its last check goes straight to renorm_ for the next
                # few steps (the norm check would only add its cost); every result is renorm_'s, bit for bit.
                wait = backoff.get(id(param), 0)
                if max_norm_inplace(param, self.max_norm, dim, check=wait == 0):
                    backoff[id(param)] = _RECHECK_EVERY if wait == 0 else wait - 1
                else:
                    backoff[id(param)] = 0
        self._steps += 1

    @override
    def measure(self) -> dict[str, float]:
        """Largest unit norm over the constrained weights."""
        norms = [_unit_norms(p, d).max() for plan in self._plans.values() for p, d in plan]
        return {"reg/max_unit_norm": float(torch.stack(norms).max())} if norms else {}

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not log_due(trainer, self.log_every_n_steps, self._last_logged_step):
            return
        self._last_logged_step = trainer.global_step
        self._last = self.measure()
        log_to_loggers(trainer, self._last)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._remove_post_hooks()

    def run_summary(self) -> dict[str, Any]:
        """Radius, selection size, steps constrained and the largest unit norm at the end of fit."""
        return {
            "max_norm": self.max_norm,
            "constrained_tensors": len(self._selected),
            **self._summary_values(),
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": int(self._steps),
            "last_logged_step": int(self._last_logged_step),
            "last": {k: float(v) for k, v in self._last.items()},
        }

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(
            self,
            trainer,
            checkpoint,
            "the constraint applies from the next optimizer step; its step count starts at zero.",
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = int(state_dict.get("steps", 0))
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))
        self._last = dict(state_dict.get("last", {}))


@torch.no_grad()
def _unit_norms(param: Tensor, dim: int) -> Tensor:
    if param.ndim < 2:
        return param.abs().float()
    other = tuple(d for d in range(param.ndim) if d != dim)
    return torch.linalg.vector_norm(param.float(), dim=other)


__all__ = ["MaxNorm"]
