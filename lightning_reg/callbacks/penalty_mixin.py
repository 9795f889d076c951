"""PenaltyLossMixin: the same weight penalty as WeightPenalty, but added to the loss by the module itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_reg.core.penalties import PenaltySpec, Selector
from lightning_reg.core.penalty_rules import PenaltyRule
from lightning_reg.core.schedules import ScheduleLike
from lightning_reg.errors import ConfigError

__all__ = ["PenaltyLossMixin"]


class PenaltyLossMixin:
    """Adds ``l1·Σ|w| + l2·Σw²`` to the loss from inside a LightningModule (penalty-in-loss).

    Use it where a callback cannot act on the gradients: closure-based optimizers such as LBFGS (the
    closure re-runs ``training_step``, so the penalty is part of every evaluation), or when the logged
    training loss should include the penalty. It uses the same selection rules, per-group coefficients
    and schedule as :class:`~lightning_reg.WeightPenalty` (see :class:`~lightning_reg.core.penalties.PenaltySpec`),
    and the same Keras convention, so ``WeightPenalty(l1=a, l2=b)`` and ``loss + penalty_loss()`` with
    ``configure_penalty(l1=a, l2=b)`` train identically under plain SGD.

    Call :meth:`configure_penalty` in ``__init__`` and add :meth:`penalty_loss` to the loss you return.
    The selection is resolved on the first call (so lazy layers must be materialized by then) and cached.
    The cost is an extra autograd graph over the penalized weights each step; prefer the callback when you can.

    Example:
        >>> import lightning.pytorch as pl, torch
        >>> from torch import nn
        >>> class Model(PenaltyLossMixin, pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        ...         self.configure_penalty(l2=1e-4, groups={"net.2.*": {"l2": 1e-3}})
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         loss = nn.functional.cross_entropy(self.net(x), y)
        ...         return loss + self.penalty_loss()
        >>> m = Model()
        >>> with torch.no_grad():
        ...     expected = 1e-4 * m.net[0].weight.pow(2).sum() + 1e-3 * m.net[2].weight.pow(2).sum()
        >>> bool(torch.isclose(m.penalty_loss(), expected))
        True
    """

    _penalty_spec: PenaltySpec | None = None
    _penalty_buckets: list[tuple[PenaltyRule, list[nn.Parameter]]] | None = None

    def configure_penalty(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        groups: Mapping[str, Mapping[str, float]] | None = None,
        schedule: ScheduleLike | None = None,
        embeddings: bool = True,
        bias: Mapping[str, float] | None = None,
    ) -> None:
        """Set the coefficients, selection and schedule (arguments as in :class:`~lightning_reg.WeightPenalty`)."""
        self._penalty_spec = PenaltySpec(
            l1=l1,
            l2=l2,
            include=include,
            exclude=exclude,
            groups=groups,
            schedule=schedule,
            embeddings=embeddings,
            bias=bias,
        )
        self._penalty_buckets = None

    @property
    def penalty_spec(self) -> PenaltySpec:
        """The validated :class:`~lightning_reg.core.penalties.PenaltySpec` set by :meth:`configure_penalty`."""
        if self._penalty_spec is None:
            raise ConfigError(
                f"{type(self).__name__}.penalty_loss() needs the penalty configured first: call "
                "`self.configure_penalty(l1=..., l2=...)` in `__init__`."
            )
        return self._penalty_spec

    def _resolve_penalty(self) -> list[tuple[PenaltyRule, list[nn.Parameter]]]:
        if self._penalty_buckets is None:
            if not isinstance(self, nn.Module):
                raise ConfigError(f"PenaltyLossMixin must be mixed into an nn.Module; got {type(self).__name__}.")
            # One term per rule (the base rule and each group's): rules with equal arguments are equal.
            buckets: dict[PenaltyRule, list[nn.Parameter]] = {}
            for p in self.penalty_spec.resolve(self, owner=f"{type(self).__name__}.penalty_loss"):
                buckets.setdefault(p.rule, []).append(p.param)
            self._penalty_buckets = list(buckets.items())
        return self._penalty_buckets

    def penalty_scale(self) -> float:
        """The schedule multiplier at the attached trainer's position (1.0 without a trainer or a schedule)."""
        try:
            trainer = self.trainer if isinstance(self, pl.LightningModule) else None
        except RuntimeError:  # a LightningModule attached to no Trainer
            trainer = None
        # A Trainer, not Fabric's stand-in (which has no global_step).
        step, epoch = (trainer.global_step, trainer.current_epoch) if isinstance(trainer, pl.Trainer) else (0, 0)
        return self.penalty_spec.scale_at(step, epoch)

    def penalty_loss(self, log: bool = False) -> Tensor:
        """The differentiable penalty at the current weights and schedule position; add it to the loss.

        Args:
            log: also ``self.log("reg/penalty", ...)`` it (on step).
        """
        scale = self.penalty_scale()
        terms = [rule.value(ps, scale) for rule, ps in self._resolve_penalty()]
        total = torch.stack(terms).sum() if len(terms) > 1 else terms[0]
        if log:
            if not isinstance(self, pl.LightningModule):
                raise ConfigError(
                    f"`penalty_loss(log=True)` logs with LightningModule.log; {type(self).__name__} is not a "
                    "LightningModule. Use log=False and log the returned value yourself."
                )
            self.log("reg/penalty", total.detach(), on_step=True, on_epoch=False, batch_size=1)
        return total
