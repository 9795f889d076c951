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

if TYPE_CHECKING:
    from lightning_reg.callbacks.activity import ActivityRegularization
    from lightning_reg.callbacks.augmix_jsd import AugMixJSD
    from lightning_reg.callbacks.checkpoint import AtomicModelCheckpoint
    from lightning_reg.callbacks.constraints import MinMaxNorm, NonNeg, UnitNorm
    from lightning_reg.callbacks.early_stopping import EarlyStopping
    from lightning_reg.callbacks.label_smoothing import LabelSmoothing
    from lightning_reg.callbacks.penalized_loss import PenalizedLoss
    from lightning_reg.callbacks.penalty_mixin import PenaltyLossMixin
    from lightning_reg.callbacks.restore_best_weights import RestoreBestWeights
    from lightning_reg.callbacks.rng_state import RNGState
    from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout
    from lightning_reg.callbacks.stochastic_depth import StochasticDepth
    from lightning_reg.callbacks.weight_penalty import MaxNorm, WeightPenalty
    from lightning_reg.core.schedules import (
        Constant,
        Cosine,
        Curriculum,
        Early,
        Exponential,
        FromCallable,
        Late,
        Linear,
        Milestones,
        Schedule,
        as_schedule,
        make_schedule,
    )
    from lightning_reg.data import (
        AugmentationMixin,
        AugmentConfig,
        CIFAR10DataModule,
        DigitsDataModule,
        FashionMNISTDataModule,
        ImageFolderDataModule,
        MNISTDataModule,
    )

#: Where each public name lives; :func:`__getattr__` imports it from there on first use.
_HOMES = {
    "ActivityRegularization": "lightning_reg.callbacks.activity",
    "AtomicModelCheckpoint": "lightning_reg.callbacks.checkpoint",
    "AugMixJSD": "lightning_reg.callbacks.augmix_jsd",
    "EarlyStopping": "lightning_reg.callbacks.early_stopping",
    "LabelSmoothing": "lightning_reg.callbacks.label_smoothing",
    "RestoreBestWeights": "lightning_reg.callbacks.restore_best_weights",
    "RNGState": "lightning_reg.callbacks.rng_state",
    "ScheduledDropout": "lightning_reg.callbacks.scheduled_dropout",
    "StochasticDepth": "lightning_reg.callbacks.stochastic_depth",
    "MaxNorm": "lightning_reg.callbacks.weight_penalty",
    "MinMaxNorm": "lightning_reg.callbacks.constraints",
    "NonNeg": "lightning_reg.callbacks.constraints",
    "UnitNorm": "lightning_reg.callbacks.constraints",
    "WeightPenalty": "lightning_reg.callbacks.weight_penalty",
    "AugmentationMixin": "lightning_reg.data",
    "AugmentConfig": "lightning_reg.data",
    "CIFAR10DataModule": "lightning_reg.data",
    "DigitsDataModule": "lightning_reg.data",
    "FashionMNISTDataModule": "lightning_reg.data",
    "ImageFolderDataModule": "lightning_reg.data",
    "MNISTDataModule": "lightning_reg.data",
    "PenaltyLossMixin": "lightning_reg.callbacks.penalty_mixin",
    "PenalizedLoss": "lightning_reg.callbacks.penalized_loss",
    **dict.fromkeys(
        (
            "Constant",
            "Cosine",
            "Curriculum",
            "Early",
            "Exponential",
            "FromCallable",
            "Late",
            "Linear",
            "Milestones",
            "Schedule",
            "as_schedule",
            "make_schedule",
        ),
        "lightning_reg.core.schedules",
    ),
}


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


__all__ = [
    # callbacks and mixins
    "ActivityRegularization",
    "AtomicModelCheckpoint",
    "AugMixJSD",
    "EarlyStopping",
    "LabelSmoothing",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "PenalizedLoss",
    "PenaltyLossMixin",
    "RestoreBestWeights",
    "RNGState",
    "ScheduledDropout",
    "StochasticDepth",
    "UnitNorm",
    "WeightPenalty",
    # data
    "AugmentConfig",
    "AugmentationMixin",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    # schedules
    "Schedule",
    "Constant",
    "Linear",
    "Cosine",
    "Milestones",
    "Exponential",
    "Early",
    "Late",
    "Curriculum",
    "FromCallable",
    "make_schedule",
    "as_schedule",
]
