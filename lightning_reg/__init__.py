"""lightning_reg: regularization for PyTorch Lightning.

Callbacks and mixins that work on any LightningModule, DataModules with augmentation, and pure schedule
objects. See README.md for the Hydra entry point (``python -m lightning_reg.train``).
"""

__version__ = "0.1.0"

from lightning_reg.callbacks.checkpoint import AtomicModelCheckpoint
from lightning_reg.callbacks.early_stopping import EarlyStopping
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.callbacks.scheduled_dropout import ScheduledDropout
from lightning_reg.callbacks.stochastic_depth import StochasticDepth
from lightning_reg.callbacks.weight_penalty import MaxNorm, WeightPenalty
from lightning_reg.data import (
    AugmentationMixin,
    AugmentConfig,
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from lightning_reg.penalty_mixin import PenaltyLossMixin
from lightning_reg.schedules import (
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

__all__ = [
    # callbacks and mixins
    "AtomicModelCheckpoint",
    "EarlyStopping",
    "MaxNorm",
    "PenaltyLossMixin",
    "RNGState",
    "ScheduledDropout",
    "StochasticDepth",
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
