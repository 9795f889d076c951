"""A configurable small convolutional classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_reg.errors import ConfigError, check_choice, check_int, check_int_list, check_range
from lightning_reg.models.classifier import INITS, ClassifierModule, OptimizerFactory, keras_init_, make_activation
from lightning_reg.optim import SchedulerSpec

__all__ = ["CNNClassifier"]


class CNNClassifier(ClassifierModule):
    """(Conv → [BatchNorm] → act → [MaxPool 2×2]) × N → Flatten → [Dropout] → (Linear → act) × M → Linear.

    The source material's CIFAR-10 network (Keras' small CNN: Conv32 → pool → Conv64 → pool → Conv64 →
    flatten → Dropout 0.5 → Dense 64 → Dense 10) is the default:
    ``CNNClassifier(input_shape=(3, 32, 32), conv_channels=[32, 64, 64], pool_after=[0, 1],
    dense_sizes=[64], dropout=0.5)``.

    Args:
        input_shape: ``(C, H, W)`` of one input.
        num_classes: number of output classes.
        conv_channels: output channels of each conv layer.
        kernel_size: square kernel size of every conv layer.
        padding: conv padding (0 is Keras' ``"valid"``).
        pool_after: indices of the conv layers followed by a 2×2 max-pool.
        dense_sizes: widths of the hidden dense layers after flattening.
        dropout: dropout rate between the flatten and the first dense layer, in [0, 1).
        conv_dropout: 2-D dropout rate after every conv block, in [0, 1).
        init: ``"torch"`` (torch's default initialisation) or ``"keras"`` (glorot-uniform kernels and zero
            biases, as Keras' Dense/Conv2D; see :func:`~lightning_reg.models.classifier.keras_init_`).
        activation, batch_norm, optimizer, scheduler, label_smoothing: as in :class:`MLPClassifier`.

    Example:
        >>> m = CNNClassifier(input_shape=(1, 8, 8), conv_channels=[8], padding=1, pool_after=[0])
        >>> m(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        conv_channels: Sequence[int] = (32, 64, 64),
        kernel_size: int = 3,
        padding: int = 0,
        pool_after: Sequence[int] = (0, 1),
        dense_sizes: Sequence[int] = (64,),
        dropout: float = 0.5,
        conv_dropout: float = 0.0,
        activation: str = "relu",
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
        if len(input_shape) != 3:
            raise ConfigError(f"`input_shape` must be (channels, height, width); got {input_shape!r}.")
        conv_channels = check_int_list("conv_channels", conv_channels)
        pool_after = check_int_list("pool_after", pool_after, allow_empty=True)
        dense_sizes = check_int_list("dense_sizes", dense_sizes, allow_empty=True)
        check_int("kernel_size", kernel_size, low=1)
        check_int("padding", padding, low=0)
        for i in pool_after:
            if not 0 <= i < len(conv_channels):
                raise ConfigError(
                    f"`pool_after` entries must be conv layer indices in [0, {len(conv_channels) - 1}]; got {i}."
                )
        check_range("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        check_range("conv_dropout", conv_dropout, 0.0, 1.0, high_inclusive=False)
        check_choice("init", init, INITS)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        layers: list[nn.Module] = []
        ch = input_shape[0]
        for i, out in enumerate(conv_channels):
            layers.append(nn.Conv2d(ch, out, kernel_size, padding=padding))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(make_activation(activation))
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
            if conv_dropout > 0:
                layers.append(nn.Dropout2d(conv_dropout))
            ch = out
        features = nn.Sequential(*layers)
        with torch.no_grad():
            try:
                flat = features(torch.zeros(1, *input_shape)).numel()
            except RuntimeError as err:
                raise ConfigError(
                    f"`input_shape` {input_shape!r} is too small for conv_channels={conv_channels}, "
                    f"kernel_size={kernel_size}, padding={padding}, pool_after={pool_after}: {err}"
                ) from None
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        width = flat
        for d in dense_sizes:
            head += [nn.Linear(width, d), make_activation(activation)]
            width = d
        head.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(features, *head)
        if init == "keras":
            keras_init_(self.net)
