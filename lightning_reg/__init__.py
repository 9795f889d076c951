"""lightning_reg: regularization for PyTorch Lightning.

Callbacks and mixins that work on any LightningModule, DataModules with augmentation, and pure schedule
objects. See README.md for the Hydra entry point (``python -m lightning_reg.train``).

The names below are imported on first use (PEP 562), so ``import lightning_reg`` (which every
``python -m lightning_reg.<tool>`` does first) does not load Lightning; ``--help`` of the tools stays fast.

Example:
    >>> import lightning_reg
    >>> lightning_reg.WeightPenalty.__module__
    'lightning_reg.callbacks.weight_penalty'
"""

__version__ = "0.1.0"

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# _HOMES below, again for type checkers (which do not run __getattr__); `as` marks each a re-export. One line per
# name, kept equal to _HOMES by tests/test_public_api.py.
if TYPE_CHECKING:
    from lightning_reg.callbacks.activity import ActivityRegularization as ActivityRegularization
    from lightning_reg.callbacks.augmix_jsd import AugMixJSD as AugMixJSD
    from lightning_reg.callbacks.checkpoint import AtomicModelCheckpoint as AtomicModelCheckpoint
    from lightning_reg.callbacks.constraints import MinMaxNorm as MinMaxNorm
    from lightning_reg.callbacks.constraints import NonNeg as NonNeg
    from lightning_reg.callbacks.constraints import UnitNorm as UnitNorm
    from lightning_reg.callbacks.early_stopping import EarlyStopping as EarlyStopping
    from lightning_reg.callbacks.label_smoothing import LabelSmoothing as LabelSmoothing
    from lightning_reg.callbacks.penalized_loss import PenalizedLoss as PenalizedLoss
    from lightning_reg.callbacks.penalty_mixin import PenaltyLossMixin as PenaltyLossMixin
    from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights as RestoreBestWeights
    from lightning_reg.callbacks.rng_state import RNGState as RNGState
    from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout as ScheduledDropout
    from lightning_reg.callbacks.stochastic_depth import StochasticDepth as StochasticDepth
    from lightning_reg.callbacks.weight_penalty import MaxNorm as MaxNorm
    from lightning_reg.callbacks.weight_penalty import WeightPenalty as WeightPenalty
    from lightning_reg.core.schedules import Constant as Constant
    from lightning_reg.core.schedules import Cosine as Cosine
    from lightning_reg.core.schedules import Curriculum as Curriculum
    from lightning_reg.core.schedules import Early as Early
    from lightning_reg.core.schedules import Exponential as Exponential
    from lightning_reg.core.schedules import FromCallable as FromCallable
    from lightning_reg.core.schedules import Late as Late
    from lightning_reg.core.schedules import Linear as Linear
    from lightning_reg.core.schedules import Milestones as Milestones
    from lightning_reg.core.schedules import Schedule as Schedule
    from lightning_reg.core.schedules import as_schedule as as_schedule
    from lightning_reg.core.schedules import make_schedule as make_schedule
    from lightning_reg.data import AugmentationMixin as AugmentationMixin
    from lightning_reg.data import AugmentConfig as AugmentConfig
    from lightning_reg.data import CIFAR10DataModule as CIFAR10DataModule
    from lightning_reg.data import DigitsDataModule as DigitsDataModule
    from lightning_reg.data import FashionMNISTDataModule as FashionMNISTDataModule
    from lightning_reg.data import ImageFolderDataModule as ImageFolderDataModule
    from lightning_reg.data import MNISTDataModule as MNISTDataModule

#: The public names, one line each: name -> the module that defines it. ``__all__``, ``dir()`` and
#: :func:`__getattr__` (which imports a name from its home on first use) are derived from it; a new public name is
#: one line here and its ``TYPE_CHECKING`` import above.
_HOMES = {
    # callbacks and mixins
    "AtomicModelCheckpoint": "lightning_reg.callbacks.checkpoint",
    "ActivityRegularization": "lightning_reg.callbacks.activity",
    "AugMixJSD": "lightning_reg.callbacks.augmix_jsd",
    "LabelSmoothing": "lightning_reg.callbacks.label_smoothing",
    "MinMaxNorm": "lightning_reg.callbacks.constraints",
    "NonNeg": "lightning_reg.callbacks.constraints",
    "UnitNorm": "lightning_reg.callbacks.constraints",
    "EarlyStopping": "lightning_reg.callbacks.early_stopping",
    "MaxNorm": "lightning_reg.callbacks.weight_penalty",
    "PenalizedLoss": "lightning_reg.callbacks.penalized_loss",
    "PenaltyLossMixin": "lightning_reg.callbacks.penalty_mixin",
    "RestoreBestWeights": "lightning_reg.callbacks.restore_best_weights",
    "RNGState": "lightning_reg.callbacks.rng_state",
    "ScheduledDropout": "lightning_reg.callbacks.scheduled_dropout",
    "StochasticDepth": "lightning_reg.callbacks.stochastic_depth",
    "WeightPenalty": "lightning_reg.callbacks.weight_penalty",
    # data
    "AugmentConfig": "lightning_reg.data",
    "AugmentationMixin": "lightning_reg.data",
    "CIFAR10DataModule": "lightning_reg.data",
    "DigitsDataModule": "lightning_reg.data",
    "FashionMNISTDataModule": "lightning_reg.data",
    "ImageFolderDataModule": "lightning_reg.data",
    "MNISTDataModule": "lightning_reg.data",
    # schedules
    "Schedule": "lightning_reg.core.schedules",
    "Constant": "lightning_reg.core.schedules",
    "Linear": "lightning_reg.core.schedules",
    "Cosine": "lightning_reg.core.schedules",
    "Milestones": "lightning_reg.core.schedules",
    "Exponential": "lightning_reg.core.schedules",
    "Early": "lightning_reg.core.schedules",
    "Late": "lightning_reg.core.schedules",
    "Curriculum": "lightning_reg.core.schedules",
    "FromCallable": "lightning_reg.core.schedules",
    "make_schedule": "lightning_reg.core.schedules",
    "as_schedule": "lightning_reg.core.schedules",
}
__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a submodule: lightning_reg.callbacks, ...
    else:
        raise AttributeError(f"module 'lightning_reg' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
