"""Reference LightningModules. Any LightningModule works with lightning_reg; these are one choice."""

from lightning_reg.models.classifier import ClassifierModule, soft_cross_entropy
from lightning_reg.models.cnn import CNNClassifier
from lightning_reg.models.mlp import MLPClassifier
from lightning_reg.models.zoo import ImageClassifier, SequenceClassifier

__all__ = [
    "CNNClassifier",
    "ClassifierModule",
    "ImageClassifier",
    "MLPClassifier",
    "SequenceClassifier",
    "soft_cross_entropy",
]
