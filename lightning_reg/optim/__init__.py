"""Optimizers and learning-rate schedules: :class:`~lightning_reg.optim.sam.SAM` (SAM/ASAM around any base
optimizer) and :class:`~lightning_reg.optim.schedulers.SchedulerSpec` (a partial LR scheduler with Lightning's
interval/monitor metadata) and :class:`~lightning_reg.optim.keras_adam.KerasAdam` (Adam with Keras' epsilon
placement, for reproducing Keras results)."""

from lightning_reg.optim.keras_adam import KerasAdam
from lightning_reg.optim.sam import SAM, sam_perturbation
from lightning_reg.optim.schedulers import SchedulerSpec

__all__ = ["SAM", "KerasAdam", "SchedulerSpec", "sam_perturbation"]
