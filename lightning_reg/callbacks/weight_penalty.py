"""Weight penalties (L1, L2, elastic net; coupled, proximal or decoupled) and max-norm as Lightning callbacks.

The math lives in the rule objects of :mod:`lightning_reg.core.penalty_rules`; this module decides *when* to call
them:

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

from lightning_reg.callbacks._penalty_hooks import _group_by_optimizer, _StepHooksMixin, _summary_line
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.constraints import MaxNorm
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.penalties import MODES, PenaltySpec, Selector, check_mode
from lightning_reg.core.penalty_rules import Bucket, PenaltyRule, make_rule, rule_class
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
        rule: any penalty rule (:mod:`lightning_reg.core.penalty_rules`), or a mapping ``{"name": ..., **arguments}``,
            in place of ``l1``/``l2``/``mode``; ``groups`` then carry that rule's arguments. E.g.
            ``rule={"name": "orthogonal", "factor": 0.01, "mode": "rows"}`` (Keras' ``OrthogonalRegularizer``).
        bias: the biases' own coefficients, e.g. ``{"l2": 1e-3}`` (Keras' ``bias_regularizer``): the ``bias`` of
            every module whose kernel is selected is penalized by the same mode with these coefficients (those
            not given are the kernels'). ``None`` (default): biases are left out.

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
        rule: PenaltyRule | Mapping[str, Any] | None = None,
        bias: Mapping[str, float] | None = None,
    ) -> None:
        if rule is None:
            self.spec = PenaltySpec(
                l1=l1,
                l2=l2,
                include=include,
                exclude=exclude,
                groups=groups,
                schedule=schedule,
                embeddings=embeddings,
                rule=rule_class(check_mode(mode), "mode", MODES),
                bias=bias,
            )
        else:
            if l1 != 0.0 or l2 != 0.0 or mode != "gradient":
                raise ConfigError(
                    "`rule` replaces `l1`, `l2` and `mode` (its arguments are its own); got "
                    f"rule={rule!r} with l1={l1!r}, l2={l2!r}, mode={mode!r}."
                )
            self.spec = PenaltySpec(
                include=include,
                exclude=exclude,
                groups=groups,
                schedule=schedule,
                embeddings=embeddings,
                rule=make_rule(rule),
                bias=bias,
            )
        if self.spec.rule.does_nothing(self.spec.variants):
            rank_zero_warn("WeightPenalty(l1=0, l2=0) does nothing; set `l1` and/or `l2` > 0.")
        self._init_common(include, exclude, log_every_n_steps)
        self._plans: dict[int, list[Bucket]] = {}
        self._pending: set[int] = set()
        # Closure evaluations in the current step, per optimizer: SAM declares 2 (`evaluations_per_step`).
        self._evaluations: dict[int, int] = {}
        self._trainer: pl.Trainer | None = None
        self._scale_key: tuple[int, int] | None = None
        self._scale = self.spec.scale_at(0, 0)

    @property
    def mode(self) -> str:
        """The rule's name: ``"gradient"``, ``"proximal"``, ``"decoupled"`` or that of a rule given as ``rule=``."""
        return self.spec.rule.name

    @mode.setter
    def mode(self, mode: str) -> None:
        # Another L1/L2 rule with the same coefficients, for the base and every group.
        cls = rule_class(check_mode(mode), "mode", MODES)
        self.spec.rule = cls(**self.spec.rule.as_dict())
        self.spec.group_rules = {k: cls(**r.as_dict()) for k, r in self.spec.group_rules.items()}
        self.spec.rule.check_variants(self.spec.variants)

    @property
    def _legacy_key(self) -> bool:
        """Whether the rule is one of ``mode``'s (the state key then keeps its form of before the rules)."""
        return self.spec.rule.name in MODES and type(self.spec.rule) is rule_class(self.spec.rule.name)

    @property
    @override
    def state_key(self) -> str:
        # Memoized: Lightning reads it at every hook call (see lightning_reg.callbacks._state_key).
        return memo_state_key(
            self,
            (self.spec.rule, self._include, self._exclude, self.spec.groups, self.spec.embeddings, self.spec.bias),
            lambda: self._generate_state_key(
                **(
                    {"l1": self.spec.l1, "l2": self.spec.l2, "mode": self.mode}
                    if self._legacy_key
                    else {"rule": self.mode, **self.spec.rule.as_dict()}
                ),
                **self._selector_key(),
                groups=self.spec.groups or None,
                # Only when set, so the state keys of existing checkpoints stay valid.
                **({} if self.spec.embeddings else {"embeddings": False}),
                **({} if self.spec.bias is None else {"bias": self.spec.bias}),
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
        self._plans, orphans = _group_by_optimizer(
            trainer.optimizers, self._selected, f"WeightPenalty(mode={self.mode!r})"
        )
        self._trainer = trainer
        self._pending.clear()
        self._register_post_hooks(trainer.optimizers)
        self._final = None
        rank_zero_info(
            f"WeightPenalty({self._describe()}): penalizing "
            f"{_summary_line(pl_module, self._selected)} across {len(self._plans)} optimizer(s)."
        )
        if orphans:
            rank_zero_warn(f"WeightPenalty: selected parameters not in any optimizer are not penalized: {orphans}.")

    def _describe(self) -> str:
        if self._legacy_key:
            return f"l1={self.spec.l1}, l2={self.spec.l2}, mode={self.mode!r}"
        return ", ".join(f"{k}={v!r}" for k, v in {"rule": self.mode, **self.spec.rule.as_dict()}.items())

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
        if not self.spec.rule.uses_grad:
            return
        # Without a schedule the multiplier is 1.0 at every step: no trainer counters to read.
        scale = 1.0 if self.spec.schedule is None else self._scale_now(trainer)
        if scale == 0.0:
            return
        self._grad_(plan, scale)

    @override
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        plan = self._plans.get(id(optimizer))
        if plan is None or self._trainer is None:
            return
        needs_grad = self.spec.rule.needs_grad(self.spec.variants)
        if id(optimizer) not in self._pending and needs_grad:
            raise ConfigError(
                f"WeightPenalty: {type(optimizer).__name__}.step() ran without Lightning's on_before_optimizer_step "
                "hook, so the penalty gradient was not added. In manual optimization, step the optimizers returned "
                "by `self.optimizers()` (LightningOptimizer), not the raw torch optimizers."
            )
        self._pending.discard(id(optimizer))
        self._evaluations.pop(id(optimizer), None)
        self._steps += 1
        if not self.spec.rule.uses_after_step:
            return
        self._after_step_(plan, self._scale_now(self._trainer))

    # ---------------------------------------------------------------------------------------- logging
    @override
    def measure(self) -> dict[str, float]:
        """Current penalty values (``reg/l1``, ``reg/l2``), L1 sparsity and scale, over the penalized weights."""
        scale = self._scale
        out = self._measure(self._plans, scale)
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
        """Coefficients (the rule's arguments), selection size, optimizer steps penalized and the penalty values at
        the end of fit.

        These describe the final weights of the fit, also after a ``trainer.test(ckpt_path="best")`` that
        reloads an earlier callback state (as ``python -m lightning_reg.train`` does).
        """
        return {
            **(
                {"l1": self.spec.l1, "l2": self.spec.l2, "mode": self.mode}
                if self._legacy_key
                else {"rule": self.mode, **self.spec.rule.as_dict()}
            ),
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
