"""What every penalty and constraint callback shares: the optimizer buckets, the step post-hooks, the summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.hooks import RemovableHandle

from lightning_reg.core.penalties import PenalizedParam, PenaltySpec, selection_summary
from lightning_reg.core.penalty_rules import Bucket, PenaltyRule
from lightning_reg.errors import ConfigError, check_int


def _group_by_optimizer(
    optimizers: Sequence[torch.optim.Optimizer], selected: Sequence[PenalizedParam], owner: str
) -> tuple[dict[int, list[Bucket]], list[str]]:
    """Map each optimizer to the buckets (param group, rule) of selected parameters it owns; return also the names
    no optimizer owns."""
    by_id = {id(p.param): p for p in selected}
    claimed: set[int] = set()
    plans: dict[int, list[Bucket]] = {}
    for opt in optimizers:
        buckets: dict[tuple[int, PenaltyRule], Bucket] = {}
        for gi, group in enumerate(opt.param_groups):
            for param in group["params"]:
                sp = by_id.get(id(param))
                if sp is None or id(param) in claimed:
                    continue
                claimed.add(id(param))
                key = (gi, sp.rule)
                if key not in buckets:
                    buckets[key] = Bucket(group, sp.rule, owner)
                buckets[key].params.append(param)
                buckets[key].dims.append(sp.unit_dim)
        if buckets:
            plans[id(opt)] = list(buckets.values())
    orphans = [p.name for p in selected if id(p.param) not in claimed]
    if not claimed:
        raise ConfigError(
            f"{owner.partition('(')[0]}: none of the selected parameters ({', '.join(p.name for p in selected)}) is "
            "in any optimizer returned by configure_optimizers(), so nothing would be penalized."
        )
    return plans, orphans


def _summary_line(model: torch.nn.Module, selected: Sequence[PenalizedParam], limit: int = 8) -> str:
    # Names for small models; counts per owning module type (selected and left out) always, so a
    # 100-tensor model gives a few readable lines rather than a wall of names.
    counts = selection_summary(model, [p.param for p in selected])
    if len(selected) > limit:
        return counts
    return f"{counts} (selected: {', '.join(p.name for p in selected)})"


class _StepHooksMixin:
    """Resolves the selection at setup, registers a post-step hook on every optimizer of the fit and removes them
    again at teardown."""

    spec: PenaltySpec
    _handles: list[RemovableHandle]
    _steps: int
    _last: dict[str, float]
    _final: dict[str, float] | None

    def _init_common(self, include: Any, exclude: Any, log_every_n_steps: int | None) -> None:
        """State both callbacks keep: the selection arguments, logging period, counters and hooks."""
        if log_every_n_steps is not None:
            check_int("log_every_n_steps", log_every_n_steps, low=0)
        self.log_every_n_steps = log_every_n_steps
        self._include, self._exclude = include, exclude
        self._selected: list[PenalizedParam] = []
        self._handles = []
        self._steps = 0
        self._last_logged_step = -1
        self._last = {}
        self._final = None

    def _selector_key(self) -> dict[str, list[str] | None]:
        """The selection arguments as plain strings, for ``state_key``."""
        return {
            "include": None if self._include is None else [str(e) for e in self._include],
            "exclude": None if self._exclude is None else [str(e) for e in self._exclude],
        }

    def _register_post_hooks(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        self._remove_post_hooks()
        self._handles = [opt.register_step_post_hook(self._after_optimizer_step) for opt in optimizers]

    def _remove_post_hooks(self) -> None:
        for handle in getattr(self, "_handles", []):
            handle.remove()
        self._handles = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            # Resolve early so that an empty selection fails before any training step.
            self._selected = self.spec.resolve(pl_module, owner=type(self).__name__)

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        raise NotImplementedError

    @staticmethod
    def _grad_(plan: Sequence[Bucket], scale: float) -> None:
        """Each bucket's rule on its gradients, under one ``no_grad`` (the foreach ops must not be recorded)."""
        with torch.no_grad():
            for bucket in plan:
                bucket.rule.grad_(bucket, scale)

    @staticmethod
    def _after_step_(plan: Sequence[Bucket], scale: float) -> None:
        """Each bucket's rule on its weights after the optimizer step, under one ``no_grad``."""
        with torch.no_grad():
            for bucket in plan:
                bucket.rule.after_step_(bucket, scale)

    def _measure(self, plans: dict[int, list[Bucket]], scale: float) -> dict[str, float]:
        """The rule's logged values over every bucket (its :meth:`~PenaltyRule.report` of their stats)."""
        stats = [bucket.rule.stats(bucket) for plan in plans.values() for bucket in plan]
        return self.spec.rule.report(stats, scale, self.spec.variants)

    def measure(self) -> dict[str, float]:
        raise NotImplementedError

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = self.measure()
        # Snapshot for run_summary(): a later trainer.test(ckpt_path=best) reloads an older callback state.
        self._final = {"optimizer_steps": self._steps, **self._last}

    def _summary_values(self) -> dict[str, Any]:
        """Steps and last measured values: as of fit end when a fit ended, else as of now."""
        final = self._final if self._final is not None else {"optimizer_steps": self._steps, **self._last}
        return {k if k == "optimizer_steps" else "final_" + k.removeprefix("reg/"): v for k, v in final.items()}
