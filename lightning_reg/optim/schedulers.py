"""Learning-rate scheduler spec: a partial scheduler plus Lightning's interval/monitor metadata."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer

from lightning_reg.errors import ConfigError, check_choice, check_int

__all__ = ["SchedulerSpec"]


@dataclass
class SchedulerSpec:
    """A learning-rate scheduler and how Lightning should step it.

    ``scheduler`` is a callable taking the optimizer (a ``functools.partial`` from a Hydra config with
    ``_partial_: true``). Schedulers that need the run length (``OneCycleLR``'s ``total_steps``) get it
    from ``trainer.estimated_stepping_batches`` when the config leaves it out.

    Example:
        >>> import functools, torch
        >>> spec = SchedulerSpec(functools.partial(torch.optim.lr_scheduler.StepLR, step_size=5))
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> spec.build(opt)["interval"]
        'epoch'
    """

    scheduler: Callable[..., Any]
    interval: str = "epoch"
    frequency: int = 1
    monitor: str | None = None

    def __post_init__(self) -> None:
        check_choice("scheduler.interval", self.interval, ("epoch", "step"))
        check_int("scheduler.frequency", self.frequency, low=1)
        if not callable(self.scheduler):
            raise ConfigError(
                f"`scheduler.scheduler` must be callable (a partial scheduler, `_partial_: true`); got {self.scheduler!r}."
            )

    def build(self, optimizer: Optimizer, total_steps: int | None = None) -> dict[str, Any]:
        """Instantiate the scheduler for ``optimizer`` and return Lightning's scheduler dict."""
        kwargs: dict[str, Any] = {}
        func = self.scheduler.func if isinstance(self.scheduler, functools.partial) else self.scheduler
        given = self.scheduler.keywords if isinstance(self.scheduler, functools.partial) else {}
        params: Mapping[str, inspect.Parameter]
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}
        if "total_steps" in params and given.get("total_steps") is None and given.get("epochs") is None:
            if total_steps is None:
                raise ConfigError(
                    f"`scheduler.scheduler.total_steps` is required by {getattr(func, '__name__', func)} when the run "
                    "length is unknown; got None. Set it in the scheduler config."
                )
            kwargs["total_steps"] = int(total_steps)
        sched = self.scheduler(optimizer, **kwargs)
        out: dict[str, Any] = {"scheduler": sched, "interval": self.interval, "frequency": self.frequency}
        if self.monitor is not None:
            out["monitor"] = self.monitor
        return out
