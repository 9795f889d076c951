"""ActivityRegularization: Keras' ``activity_regularizer`` on chosen modules' outputs, for any LightningModule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.activity import activity_grad, activity_penalty, select_modules
from lightning_reg.core.selection import Selector, Selectors
from lightning_reg.errors import ConfigError, check_int, check_non_negative

__all__ = ["ActivityRegularization"]


class ActivityRegularization(pl.Callback):
    """L1/L2 penalty on the outputs of chosen modules (Keras' ``activity_regularizer``), the loss code untouched.

    For each output ``a`` of a chosen module in a training forward pass, Keras adds ``(l1·Σ|a| + l2·Σa²) / batch``
    to the loss. Here a forward hook registers a tensor hook on ``a`` that adds that penalty's gradient,
    ``(l1·sign(a) + 2·l2·a) / batch``, to the gradient flowing into ``a``: the gradient-side design of
    :class:`~lightning_reg.WeightPenalty`. It is scaled as Lightning scales the loss: divided by
    ``accumulate_grad_batches`` in automatic optimization, and multiplied by the 16-bit ``GradScaler``'s scale
    when there is one, so training is that of the penalty in the loss. Under DDP each rank penalizes its own
    outputs, as each rank's loss would. Evaluation passes and ``torch.no_grad()`` are untouched.

    Logs ``reg/activity``: the penalty of the last training batch, summed over the chosen modules' outputs.

    Args:
        l1: L1 coefficient (>= 0).
        l2: L2 coefficient (>= 0).
        modules: module types (``"ReLU"``, ``"torch.nn.Linear"``, a class) or ``fnmatch`` globs on module names
            (``"net.1"``, ``"encoder.*.act"``); Keras' ``Dense(activation="relu", activity_regularizer=...)`` is the
            ``ReLU`` after the Linear here.
        log_every_n_steps: logging period in optimizer steps; ``None`` follows the trainer; ``0`` disables.

    Example:
        >>> ActivityRegularization(l1=1e-5, modules=["ReLU"]).state_key
        "ActivityRegularization{'l1': 1e-05, 'l2': 0.0, 'modules': ['ReLU']}"
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        modules: Sequence[Selector] = ("ReLU",),
        log_every_n_steps: int | None = None,
    ) -> None:
        self.l1 = check_non_negative("l1", l1)
        self.l2 = check_non_negative("l2", l2)
        if isinstance(modules, (str, type)):
            modules = [modules]
        self.selectors = Selectors.parse("modules", modules)
        if self.selectors is None or not (self.selectors.types or self.selectors.globs):
            raise ConfigError(f"`modules` must list module types (e.g. 'ReLU') or module-name globs; got {modules!r}.")
        self.modules = [m if isinstance(m, str) else m.__name__ for m in modules]
        if log_every_n_steps is not None:
            check_int("log_every_n_steps", log_every_n_steps, low=0)
        self.log_every_n_steps = log_every_n_steps
        if self.l1 == 0 and self.l2 == 0:
            rank_zero_warn("ActivityRegularization(l1=0, l2=0) does nothing; set `l1` and/or `l2` > 0.")
        self._handles: list[RemovableHandle] = []
        self._chosen: list[str] = []
        self._factor = 1.0
        self._value: Tensor | None = None
        self._steps = 0
        self._last_logged_step = -1
        self._last: dict[str, float] = {}
        self._final: dict[str, float] | None = None

    @property
    @override
    def state_key(self) -> str:
        return memo_state_key(
            self,
            (self.l1, self.l2, tuple(self.modules)),
            lambda: self._generate_state_key(l1=self.l1, l2=self.l2, modules=list(self.modules)),
        )

    # ------------------------------------------------------------------------------------------ hooks
    def _forward_hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not (module.training and torch.is_grad_enabled() and self.l1 + self.l2 > 0):
            return
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        for out in outputs:
            if not isinstance(out, Tensor) or not out.requires_grad or not out.is_floating_point():
                continue
            value = activity_penalty(out.detach(), self.l1, self.l2)
            self._value = value if self._value is None else self._value + value
            out.register_hook(self._make_grad_hook(out.detach()))

    def _make_grad_hook(self, activation: Tensor) -> Any:
        factor, l1, l2 = self._factor, self.l1, self.l2

        def add_penalty_grad(grad: Tensor) -> Tensor:
            return grad + activity_grad(activation, l1, l2).mul_(factor).to(grad.dtype)

        return add_penalty_grad

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # an empty selection fails before any training step
            select_modules(pl_module, self.selectors)  # type: ignore[arg-type]

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()
        chosen = select_modules(pl_module, self.selectors)  # type: ignore[arg-type]
        self._handles = [m.register_forward_hook(self._forward_hook) for _, m in chosen]
        self._chosen = [name for name, _ in chosen]
        self._final = None
        rank_zero_info(
            f"ActivityRegularization(l1={self.l1}, l2={self.l2}): on the outputs of {len(chosen)} module(s): "
            f"{', '.join(self._chosen[:12])}{' ...' if len(chosen) > 12 else ''}."
        )

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # What Lightning does to the loss before backward, done to the penalty's gradient.
        factor = 1.0 / trainer.accumulate_grad_batches if pl_module.automatic_optimization else 1.0
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            factor *= float(scaler.get_scale())
        self._factor = factor
        self._value = None

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._steps += 1
        if not log_due(trainer, self.log_every_n_steps, self._last_logged_step):
            return
        self._last_logged_step = trainer.global_step
        self._last = self.measure()
        log_to_loggers(trainer, self._last)

    def measure(self) -> dict[str, float]:
        """The penalty of the last training batch (``reg/activity``)."""
        return {"reg/activity": float(self._value)} if self._value is not None else {}

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = self.measure() or self._last
        self._final = {"batches": self._steps, **self._last}

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._remove_hooks()

    def run_summary(self) -> dict[str, Any]:
        """Coefficients, the modules regularized, training batches and the last penalty value."""
        final = self._final if self._final is not None else {"batches": self._steps, **self._last}
        return {
            "l1": self.l1,
            "l2": self.l2,
            "modules": list(self._chosen),
            **{k if k == "batches" else "final_" + k.removeprefix("reg/"): v for k, v in final.items()},
        }

    # ------------------------------------------------------------------------------------------ state
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
            self, trainer, checkpoint, "the penalty applies from the resumed step on; its batch count starts at zero."
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._steps = int(state_dict.get("steps", 0))
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))
        self._last = dict(state_dict.get("last", {}))
