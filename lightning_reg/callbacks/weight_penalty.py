"""Weight penalties (L1, L2, elastic net; coupled, proximal or decoupled) and max-norm as Lightning callbacks.

The math lives in :mod:`lightning_reg.core.penalties`; this module decides *when* to call it:

- the gradient part in ``on_before_optimizer_step``, which Lightning calls once per optimizer step, after
  the closure's backward (and after accumulation, the DDP all-reduce and AMP unscaling) and before the
  optimizer reads the gradients;
- the after-step part (soft-threshold, decoupled decay, max-norm) in a step post-hook registered on each
  torch optimizer (``Optimizer.register_step_post_hook``), because Lightning has no callback hook right after
  ``optimizer.step()``. The post-hook fires exactly when the optimizer really stepped (not when a 16-bit
  ``GradScaler`` skipped the step), in automatic and in manual optimization.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_reg.callbacks._penalty_hooks import _Bucket, _group_by_optimizer, _StepHooksMixin, _summary_line
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.callbacks.constraints import MaxNorm
from lightning_reg.core.penalties import (
    PenaltySpec,
    Selector,
    check_mode,
    count_zeros,
    decoupled_step_,
    l1_norm,
    penalty_grad_inplace,
    soft_threshold_,
    sq_l2_norm,
)
from lightning_reg.core.schedules import ScheduleLike
from lightning_reg.errors import ConfigError

_CLOSURE_HINT = (
    "Closure-based optimizers (LBFGS and the like) evaluate the loss and gradients several times per step, so a "
    "penalty added to the gradients by a callback would be applied to some evaluations and not others. Put the "
    "penalty in the loss instead: mix `lightning_reg.PenaltyLossMixin` into your LightningModule, call "
    "`self.configure_penalty(l1=..., l2=...)` in `__init__` and return `loss + self.penalty_loss()` from "
    "`training_step`."
)


class WeightPenalty(_StepHooksMixin, pl.Callback):
    """L1 / L2 / elastic-net weight penalty for any LightningModule, without changing its code.

    Keras convention: the penalty is ``l1·Σ|w| + l2·Σw²`` (no ½ factor), so its gradient is
    ``l1·sign(w) + 2·l2·w``. ``WeightPenalty(l2=1e-4)`` trains exactly like adding ``1e-4·Σw²`` to the loss,
    and like ``torch.optim.SGD(weight_decay=2e-4)`` restricted to the selected parameters.

    Modes:

    - ``"gradient"`` (coupled, default): adds the penalty gradient to ``param.grad`` in
      ``on_before_optimizer_step`` with fused ``torch._foreach_*`` ops, once per optimizer step (after
      gradient accumulation, the DDP all-reduce and AMP unscaling), so momentum and Adam's scaling see it as
      they would see a penalty in the loss.
    - ``"proximal"``: after each optimizer step, soft-thresholds the L1-penalized weights,
      ``w ← sign(w)·max(|w| − lr·l1, 0)``: proximal gradient descent, which reaches *exact* zeros (plain
      subgradient L1 only oscillates around zero). Any ``l2`` stays in the gradient. Needs ``l1 > 0``.
    - ``"decoupled"``: after each optimizer step, ``w ← w − lr·(l1·sign(w) + 2·l2·w)``, outside the
      optimizer's momentum/adaptive scaling (AdamW-style; ``AdamW(weight_decay=λ)`` ≙ ``l2=λ/2``).

    ``lr`` is read from each parameter's optimizer param group at that step, so LR schedulers are followed.

    Selection (resolved once, at fit start): by default the kernels (``ndim >= 2`` weights) of Linear, Conv,
    Embedding, attention and RNN layers; biases, normalization layers and other 1-D parameters are left out.
    ``include`` replaces the default with module types (their kernels) and/or parameter-name globs;
    ``exclude`` removes module types (all their parameters) and/or globs. ``groups`` overrides coefficients
    per glob or type, e.g. a stronger L2 on the head. Each optimizer penalizes only the selected parameters
    it owns. An empty selection is a :class:`~lightning_reg.errors.ConfigError` that lists the model's
    parameters.

    The coefficients are ``base × schedule.at(global_step, epoch)``: ``schedule`` is a multiplier (a
    :class:`~lightning_reg.core.schedules.Schedule`, a number, a mapping such as
    ``{"name": "linear", "start": 0, "end": 1, "end_at": 1000}`` or a callable). It is a pure function of
    the trainer counters, so a resumed run continues it exactly.

    Logged every ``log_every_n_steps`` optimizer steps (default: the trainer's ``log_every_n_steps``), at the
    weights after the step, at a cost independent of the step count: ``reg/l1`` and ``reg/l2`` (the scheduled
    penalty values), ``reg/l1_zero_frac`` (fraction of exactly-zero L1-penalized weights) and ``reg/scale``
    when a schedule is set. They go straight to the trainer's loggers (with ``step=global_step``), not through
    ``self.log``; ``run_summary()`` gives the final values for ``metrics.json``.

    Limits: closure-based optimizers (LBFGS) are refused; use :class:`~lightning_reg.PenaltyLossMixin`.
    In manual optimization, call ``step()`` on the optimizers returned by ``self.optimizers()`` (Lightning
    then calls ``on_before_optimizer_step``); stepping a raw torch optimizer raises an error in gradient mode.

    Args:
        l1: L1 coefficient (>= 0).
        l2: L2 coefficient (>= 0).
        mode: ``"gradient"``, ``"proximal"`` or ``"decoupled"``.
        include: module types / names (``"Linear"``, ``"torch.nn.Conv2d"``) or parameter-name globs.
        exclude: module types / names or parameter-name globs to leave out.
        groups: ``{glob or type name: {"l1": a, "l2": b}}`` coefficient overrides; first match wins.
        schedule: multiplier schedule for both coefficients (``None``: constant 1).
        log_every_n_steps: logging period in optimizer steps; ``None`` follows the trainer; ``0`` disables.
        embeddings: penalize ``nn.Embedding``/``EmbeddingBag`` weights (word/position/token-type embeddings,
            and a language-model head tied to them, counted once). Default ``True``, as Hugging Face's
            ``Trainer`` decays them; ``False`` leaves them out.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning_reg import WeightPenalty
        >>> penalty = WeightPenalty(l2=1e-4, groups={"net.4.*": {"l2": 1e-3}})
        >>> trainer = pl.Trainer(callbacks=[penalty], max_epochs=1, logger=False)
        >>> penalty.state_key  # doctest: +NORMALIZE_WHITESPACE
        "WeightPenalty{'l1': 0.0, 'l2': 0.0001, 'mode': 'gradient', 'include': None, 'exclude': None,
        'groups': {'net.4.*': {'l2': 0.001}}}"
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        mode: str = "gradient",
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        groups: Mapping[str, Mapping[str, float]] | None = None,
        schedule: ScheduleLike | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        self.mode = check_mode(mode)
        self.spec = PenaltySpec(
            l1=l1, l2=l2, include=include, exclude=exclude, groups=groups, schedule=schedule, embeddings=embeddings
        )
        if self.mode == "proximal" and not self.spec.any_l1:
            raise ConfigError(
                "`mode='proximal'` soft-thresholds the L1 term, so it needs `l1` > 0; got l1=0.0 "
                f"(l2={self.spec.l2}). For a pure L2 penalty use mode='gradient' or mode='decoupled'."
            )
        if not self.spec.any_l1 and not self.spec.any_l2:
            rank_zero_warn("WeightPenalty(l1=0, l2=0) does nothing; set `l1` and/or `l2` > 0.")
        self._init_common(include, exclude, log_every_n_steps)
        self._plans: dict[int, list[_Bucket]] = {}
        self._pending: set[int] = set()
        # Closure evaluations in the current step, per optimizer: SAM declares 2 (`evaluations_per_step`).
        self._evaluations: dict[int, int] = {}
        self._trainer: pl.Trainer | None = None
        self._scale_key: tuple[int, int] | None = None
        self._scale = self.spec.scale_at(0, 0)

    @property
    @override
    def state_key(self) -> str:
        # Memoized: Lightning reads it at every hook call (see lightning_reg.callbacks._state_key).
        return memo_state_key(
            self,
            (
                self.spec.l1,
                self.spec.l2,
                self.mode,
                self._include,
                self._exclude,
                self.spec.groups,
                self.spec.embeddings,
            ),
            lambda: self._generate_state_key(
                l1=self.spec.l1,
                l2=self.spec.l2,
                mode=self.mode,
                **self._selector_key(),
                groups=self.spec.groups or None,
                # Only when set, so the state keys of existing checkpoints stay valid.
                **({} if self.spec.embeddings else {"embeddings": False}),
            ),
        )

    # ---------------------------------------------------------------------------------------- fit start
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for opt in trainer.optimizers:
            if isinstance(opt, torch.optim.LBFGS):
                raise ConfigError(f"WeightPenalty cannot be used with {type(opt).__name__}. {_CLOSURE_HINT}")
        # Re-resolve: strategy.setup() may have moved or wrapped the model since `setup`.
        self._selected = self.spec.resolve(pl_module, owner="WeightPenalty")
        self._plans, orphans = _group_by_optimizer(trainer.optimizers, self._selected, "WeightPenalty")
        self._trainer = trainer
        self._pending.clear()
        self._register_post_hooks(trainer.optimizers)
        self._final = None
        rank_zero_info(
            f"WeightPenalty(l1={self.spec.l1}, l2={self.spec.l2}, mode={self.mode!r}): penalizing "
            f"{_summary_line(pl_module, self._selected)} across {len(self._plans)} optimizer(s)."
        )
        if orphans:
            rank_zero_warn(f"WeightPenalty: selected parameters not in any optimizer are not penalized: {orphans}.")

    def _scale_now(self, trainer: pl.Trainer) -> float:
        key = (trainer.global_step, trainer.current_epoch)
        if key != self._scale_key:
            self._scale_key = key
            self._scale = self.spec.scale_at(*key)
        return self._scale

    # ------------------------------------------------------------------------------------ the step
    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        plan = self._plans.get(id(optimizer))
        if plan is None:
            return
        evaluations = self._evaluations.get(id(optimizer), 0) + 1
        self._evaluations[id(optimizer)] = evaluations
        if id(optimizer) in self._pending and evaluations > getattr(optimizer, "evaluations_per_step", 1):
            raise ConfigError(
                f"WeightPenalty: {type(optimizer).__name__} evaluated its closure more than once in one step. "
                + _CLOSURE_HINT
            )
        self._pending.add(id(optimizer))
        if self.mode == "decoupled":
            return
        # Without a schedule the multiplier is 1.0 at every step: no trainer counters to read.
        scale = 1.0 if self.spec.schedule is None else self._scale_now(trainer)
        if scale == 0.0:
            return
        proximal = self.mode == "proximal"
        with torch.no_grad():  # one context for every bucket (the foreach ops must not be recorded)
            for bucket in plan:
                l1 = 0.0 if proximal else bucket.l1 * scale
                l2 = bucket.l2 * scale
                if l1 == 0.0 and l2 == 0.0:
                    continue
                # `.grad` is read every step: zero_grad(set_to_none=True) gives new gradient tensors.
                maybe_grads = [p.grad for p in bucket.params]
                grads = [g for g in maybe_grads if g is not None]
                if len(grads) == len(maybe_grads):
                    params = bucket.params
                else:
                    params = [p for p, g in zip(bucket.params, maybe_grads) if g is not None]
                penalty_grad_inplace(params, grads, l1, l2)

    @override
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        plan = self._plans.get(id(optimizer))
        if plan is None or self._trainer is None:
            return
        needs_grad = self.mode == "gradient" or (self.mode == "proximal" and self.spec.any_l2)
        if id(optimizer) not in self._pending and needs_grad:
            raise ConfigError(
                f"WeightPenalty: {type(optimizer).__name__}.step() ran without Lightning's on_before_optimizer_step "
                "hook, so the penalty gradient was not added. In manual optimization, step the optimizers returned "
                "by `self.optimizers()` (LightningOptimizer), not the raw torch optimizers."
            )
        self._pending.discard(id(optimizer))
        self._evaluations.pop(id(optimizer), None)
        self._steps += 1
        if self.mode == "gradient":
            return
        scale = self._scale_now(self._trainer)
        for bucket in plan:
            lr = bucket.lr("WeightPenalty(mode=" + repr(self.mode) + ")")
            if self.mode == "proximal":
                soft_threshold_(bucket.params, lr * bucket.l1 * scale)
            else:
                decoupled_step_(bucket.params, lr, bucket.l1 * scale, bucket.l2 * scale)

    # ---------------------------------------------------------------------------------------- logging
    @override
    def measure(self) -> dict[str, float]:
        """Current penalty values (``reg/l1``, ``reg/l2``), L1 sparsity and scale, over the penalized weights."""
        scale = self._scale
        out: dict[str, float] = {}
        l1_zero = l1_numel = 0
        l1_total = l2_total = 0.0
        for plan in self._plans.values():
            for b in plan:
                if b.l1 > 0:
                    l1_total += b.l1 * float(l1_norm(b.params))
                    l1_zero += count_zeros(b.params)
                    l1_numel += sum(p.numel() for p in b.params)
                if b.l2 > 0:
                    l2_total += b.l2 * float(sq_l2_norm(b.params))
        if self.spec.any_l1:
            out["reg/l1"] = scale * l1_total
            out["reg/l1_zero_frac"] = l1_zero / max(1, l1_numel)
        if self.spec.any_l2:
            out["reg/l2"] = scale * l2_total
        if self.spec.schedule is not None:
            out["reg/scale"] = scale
        return out

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # At most one optimizer step per optimizer and batch: a closure re-evaluation is detected per batch.
        self._pending.clear()
        self._evaluations.clear()
        if not log_due(trainer, self.log_every_n_steps, self._last_logged_step):
            return
        self._last_logged_step = trainer.global_step
        self._scale_now(trainer)
        self._last = self.measure()
        log_to_loggers(trainer, self._last)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._remove_post_hooks()
            self._trainer = None

    def run_summary(self) -> dict[str, Any]:
        """Coefficients, selection size, optimizer steps penalized and the penalty values at the end of fit.

        These describe the final weights of the fit, also after a ``trainer.test(ckpt_path="best")`` that
        reloads an earlier callback state (as ``python -m lightning_reg.train`` does).
        """
        return {
            "l1": self.spec.l1,
            "l2": self.spec.l2,
            "mode": self.mode,
            "penalized_tensors": len(self._selected),
            "penalized_params": sum(p.param.numel() for p in self._selected),
            **self._summary_values(),
        }

    # ---------------------------------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "scale": float(self._scale),
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
            "the penalty applies from the resumed step on; its step count and logged values start at zero.",
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._scale = float(state_dict.get("scale", self._scale))
        self._steps = int(state_dict.get("steps", 0))
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))
        self._last = dict(state_dict.get("last", {}))
        self._scale_key = None


__all__ = ["MaxNorm", "WeightPenalty"]
