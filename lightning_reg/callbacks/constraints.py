"""Weight constraints as Lightning callbacks: :class:`MaxNorm`, and Keras' :class:`MinMaxNorm`, :class:`UnitNorm` and
:class:`NonNeg` (the math is in :mod:`lightning_reg.core.penalty_rules` and :mod:`lightning_reg.core.keras_rules`).

A constraint acts after every optimizer step, in a step post-hook on each optimizer (see
:mod:`lightning_reg.callbacks.weight_penalty`), on the parameters that optimizer owns: in automatic and manual
optimization, and on every DDP rank (the weights stay identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_reg.callbacks._penalty_hooks import _group_by_optimizer, _StepHooksMixin, _summary_line
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core import keras_rules
from lightning_reg.core import penalty_rules as rules
from lightning_reg.core.penalties import PenaltySpec, Selector
from lightning_reg.core.penalty_rules import Bucket, PenaltyRule


class Constraint(_StepHooksMixin, pl.Callback):
    """A constraint rule applied after every optimizer step to the selected weights (a base for thin subclasses).

    A subclass names its rule class (:attr:`rule_class`) and takes the rule's arguments in its constructor, then
    the selection arguments; its arguments appear in ``state_key`` as the rule's, then ``include``/``exclude``.
    """

    rule_class: ClassVar[type[PenaltyRule]]
    #: What ``run_summary`` calls the number of selected tensors.
    summary_count: ClassVar[str] = "constrained_tensors"

    def _init_constraint(
        self,
        rule: PenaltyRule,
        include: Sequence[Selector] | None,
        exclude: Sequence[Selector] | None,
        log_every_n_steps: int | None,
        embeddings: bool,
    ) -> None:
        self.spec = PenaltySpec(include=include, exclude=exclude, embeddings=embeddings, rule=rule)
        self._init_common(include, exclude, log_every_n_steps)
        self._plans: dict[int, list[Bucket]] = {}

    @property
    def rule(self) -> PenaltyRule:
        return self.spec.rule

    def _set_argument(self, name: str, value: Any) -> None:
        """Assigning an argument gives a new rule (checked, and in ``state_key``)."""
        self.spec.rule = type(self.spec.rule)(**{**self.spec.rule.as_dict(), name: value})

    def _describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.rule.as_dict().items())

    @property
    @override
    def state_key(self) -> str:
        return memo_state_key(
            self,
            (self.spec.rule, self._include, self._exclude, self.spec.embeddings),
            lambda: self._generate_state_key(
                **self.rule.as_dict(),
                **self._selector_key(),
                **({} if self.spec.embeddings else {"embeddings": False}),
            ),
        )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        owner = type(self).__name__
        self._selected = self.spec.resolve(pl_module, owner=owner)
        self._plans, orphans = _group_by_optimizer(trainer.optimizers, self._selected, owner)
        self._register_post_hooks(trainer.optimizers)
        self._final = None
        rank_zero_info(f"{owner}({self._describe()}): constraining {_summary_line(pl_module, self._selected)}.")
        if orphans:
            rank_zero_warn(f"{owner}: selected parameters not in any optimizer are not constrained: {orphans}.")

    @override
    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        plan = self._plans.get(id(optimizer))
        if plan is None:
            return
        self._after_step_(plan, 1.0)
        self._steps += 1

    @override
    def measure(self) -> dict[str, float]:
        """The rule's logged values over the constrained weights."""
        return self._measure(self._plans, 1.0)

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
        """The rule's arguments, selection size, steps constrained and the logged values at the end of fit."""
        return {
            **self.rule.as_dict(),
            self.summary_count: len(self._selected),
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


class MaxNorm(Constraint):
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

    rule_class = rules.MaxNorm

    def __init__(
        self,
        max_norm: float = 3.0,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        self._init_constraint(rules.MaxNorm(max_norm=max_norm), include, exclude, log_every_n_steps, embeddings)

    @property
    def max_norm(self) -> float:
        """The radius; assigning it gives a new rule."""
        return float(self.rule.max_norm)  # type: ignore[attr-defined]

    @max_norm.setter
    def max_norm(self, value: float) -> None:
        self._set_argument("max_norm", value)


class MinMaxNorm(Constraint):
    """Keras' ``MinMaxNorm`` constraint: after every optimizer step, each unit's norm ``n`` moves toward
    ``[min_value, max_value]``: ``w ← w·(rate·clip(n, min_value, max_value) + (1 − rate)·n) / (ε + n)``.

    Units as in :class:`MaxNorm` (a row of a Linear weight, an output channel of a Conv kernel); the same selection
    arguments. ``rate=1`` enforces the interval at every step; a smaller rate moves each norm part of the way.
    ``axis=None`` takes the norm over every dimension but the unit's (Keras' ``axis=0`` on a Dense kernel, whose
    layout is our weight transposed); a list names the torch dimensions. Logs ``reg/max_unit_norm`` and
    ``reg/min_unit_norm``.

    Args:
        min_value, max_value: the interval (``0 <= min_value <= max_value``).
        rate: how far toward the interval each step moves a norm, in ``[0, 1]``.
        axis: the torch dimensions each norm runs over; ``None``: all but the output unit's.
        include, exclude, log_every_n_steps, embeddings: as :class:`MaxNorm`'s.

    Example:
        >>> MinMaxNorm(0.5, 2.0).state_key
        "MinMaxNorm{'min_value': 0.5, 'max_value': 2.0, 'rate': 1.0, 'axis': None, 'include': None, 'exclude': None}"
    """

    rule_class = keras_rules.MinMaxNorm

    def __init__(
        self,
        min_value: float = 0.0,
        max_value: float = 1.0,
        rate: float = 1.0,
        axis: int | Sequence[int] | None = None,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        rule = keras_rules.MinMaxNorm(min_value=min_value, max_value=max_value, rate=rate, axis=axis)  # type: ignore[arg-type]
        self._init_constraint(rule, include, exclude, log_every_n_steps, embeddings)


class UnitNorm(Constraint):
    """Keras' ``UnitNorm`` constraint: after every optimizer step, each unit's incoming weights get norm 1
    (``w ← w / (ε + n)``). Units, ``axis`` and the selection as in :class:`MinMaxNorm`. Logs ``reg/max_unit_norm``
    and ``reg/min_unit_norm``.

    Example:
        >>> UnitNorm().state_key
        "UnitNorm{'axis': None, 'include': None, 'exclude': None}"
    """

    rule_class = keras_rules.UnitNorm

    def __init__(
        self,
        axis: int | Sequence[int] | None = None,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        rule = keras_rules.UnitNorm(axis=axis)  # type: ignore[arg-type]
        self._init_constraint(rule, include, exclude, log_every_n_steps, embeddings)


class NonNeg(Constraint):
    """Keras' ``NonNeg`` constraint: after every optimizer step, the negative selected weights are set to zero
    (``w ← w·[w ≥ 0]``). The selection as in :class:`MaxNorm`. Logs ``reg/zero_frac``.

    Example:
        >>> NonNeg(include=["net.0.weight"]).state_key
        "NonNeg{'include': ['net.0.weight'], 'exclude': None}"
    """

    rule_class = keras_rules.NonNeg

    def __init__(
        self,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        log_every_n_steps: int | None = None,
        embeddings: bool = True,
    ) -> None:
        self._init_constraint(keras_rules.NonNeg(), include, exclude, log_every_n_steps, embeddings)


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm"]
