"""A configurable multilayer perceptron classifier."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from lightning_reg.errors import check_choice, check_int, check_int_list, check_range
from lightning_reg.models.classifier import INITS, ClassifierModule, OptimizerFactory, keras_init_, make_activation
from lightning_reg.optim import SchedulerSpec

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierModule):
    """Flatten → [Dropout(input)] → (Linear → [BatchNorm] → act → [Dropout]) × N → Linear.

    The source material's MNIST network (784 → 500×5 → 10, ReLU) is
    ``MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500] * 5)``; add ``dropout=0.25`` for its
    dropout variant. Dropout modules exist only where a rate > 0 is given.

    Args:
        input_shape: shape of one input, e.g. ``(1, 8, 8)``; flattened.
        num_classes: number of output classes.
        hidden_sizes: widths of the hidden layers (may be empty for logistic regression).
        activation: one of ``relu, gelu, silu, elu, selu, leaky_relu, tanh, sigmoid``.
        dropout: dropout rate after every hidden layer, in [0, 1).
        input_dropout: dropout rate on the flattened input, in [0, 1).
        batch_norm: insert ``BatchNorm1d`` after every hidden Linear.
        init: ``"torch"`` (torch's default initialisation) or ``"keras"`` (glorot-uniform kernels and zero
            biases, as Keras' Dense/Conv2D; see :func:`~lightning_reg.models.classifier.keras_init_`).
        optimizer, scheduler, label_smoothing: see :class:`ClassifierModule`.

    Example:
        >>> import torch
        >>> m = MLPClassifier(input_shape=(1, 8, 8), num_classes=10, hidden_sizes=[32], dropout=0.2)
        >>> m(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        hidden_sizes: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        batch_norm: bool = False,
        init: str = "torch",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes=num_classes, optimizer=optimizer, scheduler=scheduler, label_smoothing=label_smoothing
        )
        input_shape = tuple(check_int_list("input_shape", input_shape))
        hidden_sizes = check_int_list("hidden_sizes", hidden_sizes, allow_empty=True)
        for i, h in enumerate(hidden_sizes):
            check_int(f"hidden_sizes[{i}]", h, low=1)
        check_range("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        check_range("input_dropout", input_dropout, 0.0, 1.0, high_inclusive=False)
        check_choice("init", init, INITS)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = math.prod(input_shape)
        for h in hidden_sizes:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)
        if init == "keras":
            keras_init_(self.net)
