"""Generic LightningModules around any ``nn.Module`` factory, and factories for timm, torchvision and Hugging Face.

Every factory builds its model from a config with random weights (no download). ``timm`` and ``transformers``
are optional: install ``lightning_reg[models]``.

- :class:`ImageClassifier` wraps ``net(num_classes=..., input_shape=...)`` (a Hydra partial) into the reference
  classifier logic (:class:`~lightning_reg.models.ClassifierModule`: loss, metrics, optimizer factory).
- :class:`SequenceClassifier` wraps a Hugging Face ``...ForSequenceClassification`` model; batches are
  ``(input_ids, labels)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from lightning_reg.errors import ConfigError, check_int
from lightning_reg.models.classifier import ClassifierModule, OptimizerFactory
from lightning_reg.optim import SchedulerSpec

__all__ = [
    "ImageClassifier",
    "NetFactory",
    "SequenceClassifier",
    "hf_sequence_classifier",
    "timm_model",
    "torchvision_model",
]

NetFactory = Callable[..., nn.Module]


def _import(name: str, extra: str = "models") -> Any:
    try:
        return __import__(name)
    except ImportError:
        raise ConfigError(f"this model needs `{name}`; install it with `pip install lightning_reg[{extra}]`.") from None


def _shape(input_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"`input_shape` must be (channels, height, width); got {input_shape!r}.")
    return shape


def timm_model(name: str, num_classes: int, input_shape: Sequence[int] | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, ...)`` with ``in_chans`` from ``input_shape``.

    ``img_size=None`` in ``kwargs`` is replaced by the input height (for ViTs, which need it); leave
    ``img_size`` out for models that do not take it (ConvNeXt).

    Example:
        >>> vit = timm_model("vit_tiny_patch16_224", 10, (1, 8, 8), img_size=None, patch_size=4, depth=1)
        >>> vit(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    timm = _import("timm")
    shape = _shape(input_shape)
    if "img_size" in kwargs and kwargs["img_size"] is None:
        if shape is None:
            raise ConfigError("`img_size: null` takes the input height from `input_shape`, which is not set.")
        kwargs["img_size"] = shape[1]
    if shape is not None:
        kwargs.setdefault("in_chans", shape[0])
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


def torchvision_model(
    name: str, num_classes: int, input_shape: Sequence[int] | None = None, small_input: bool = False, **kwargs: Any
) -> nn.Module:
    """``torchvision.models.get_model(name, weights=None, num_classes=...)``.

    For a ResNet, ``small_input=True`` (or an input that is not 3-channel) replaces the stem with a 3×3
    stride-1 conv of the input's channels and drops the max-pool, as CIFAR ResNets do: a 7×7 stride-2 stem
    and a pool would shrink an 8×8 or 32×32 image to almost nothing.

    Example:
        >>> net = torchvision_model("resnet18", 10, (1, 8, 8), small_input=True)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    import torchvision

    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    shape = _shape(input_shape)
    channels = shape[0] if shape is not None else 3
    if small_input or channels != 3:
        if not isinstance(getattr(net, "conv1", None), nn.Conv2d):
            raise ConfigError(
                f"`small_input`/a {channels}-channel input needs a ResNet-style `conv1`; {name!r} has none."
            )
        net.conv1 = nn.Conv2d(channels, net.conv1.out_channels, 3, 1, 1, bias=False)
        if small_input:
            net.maxpool = nn.Identity()
    return net


def hf_sequence_classifier(
    config_class: str = "BertConfig", model_class: str = "BertForSequenceClassification", **config: Any
) -> nn.Module:
    """A Hugging Face model built from ``transformers.<config_class>(**config)`` with random weights.

    Example:
        >>> net = hf_sequence_classifier(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                              intermediate_size=32, max_position_embeddings=16, num_labels=3)
        >>> type(net).__name__, net.config.num_labels
        ('BertForSequenceClassification', 3)
    """
    transformers = _import("transformers")
    try:
        config_cls, model_cls = getattr(transformers, config_class), getattr(transformers, model_class)
    except AttributeError as err:
        raise ConfigError(f"`config_class`/`model_class` must name transformers classes; {err}.") from None
    return model_cls(config_cls(**config))


class ImageClassifier(ClassifierModule):
    """The reference classifier logic around any image model: ``net(num_classes=..., input_shape=...)``.

    ``net`` is a factory (a Hydra ``_partial_`` of :func:`timm_model`, :func:`torchvision_model` or your own
    function) or a ready ``nn.Module``. The built model is ``self.net``, so parameter names read
    ``net.blocks.0.attn.qkv.weight`` and so on.

    Args:
        net: factory called with ``num_classes`` and ``input_shape``, or an ``nn.Module``.
        num_classes: number of classes (filled from the data module by the entry point).
        input_shape: ``(C, H, W)`` (filled from the data module by the entry point).
        optimizer, scheduler, label_smoothing: as in :class:`~lightning_reg.models.ClassifierModule`.

    Example:
        >>> from functools import partial
        >>> m = ImageClassifier(partial(torchvision_model, "resnet18", small_input=True), 10, (1, 8, 8))
        >>> m(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        net: NetFactory | nn.Module,
        num_classes: int = 10,
        input_shape: Sequence[int] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes=num_classes, optimizer=optimizer, scheduler=scheduler, label_smoothing=label_smoothing
        )
        if isinstance(net, nn.Module):
            built = net
        elif callable(net):
            built = net(num_classes=num_classes, input_shape=_shape(input_shape))
        else:
            raise ConfigError(f"`net` must be an nn.Module or a factory returning one; got {net!r}.")
        if not isinstance(built, nn.Module):
            raise ConfigError(f"`net` must build an nn.Module; it returned {type(built).__name__}.")
        self.input_shape = _shape(input_shape)
        self.save_hyperparameters(
            {
                "num_classes": num_classes,
                "input_shape": self.input_shape,
                "net": type(built).__name__,
                "label_smoothing": float(label_smoothing),
            }
        )
        self.net = built


class SequenceClassifier(ClassifierModule):
    """The reference classifier logic around a Hugging Face ``...ForSequenceClassification`` model.

    Batches are ``(input_ids, labels)``; the attention mask is ``input_ids != config.pad_token_id``. The loss and
    metrics are those of :class:`~lightning_reg.models.ClassifierModule` on the model's ``logits``.

    Args:
        net: a factory (``**kwargs`` unused; e.g. a partial of :func:`hf_sequence_classifier`) or an ``nn.Module``.
        num_classes: the model's ``num_labels``.
        optimizer, scheduler, label_smoothing: as in :class:`~lightning_reg.models.ClassifierModule`.

    Example:
        >>> from functools import partial
        >>> net = partial(hf_sequence_classifier, vocab_size=50, hidden_size=16, num_hidden_layers=1,
        ...               num_attention_heads=2, intermediate_size=32, max_position_embeddings=16, num_labels=3)
        >>> m = SequenceClassifier(net, num_classes=3)
        >>> m(torch.zeros(2, 8, dtype=torch.long)).shape
        torch.Size([2, 3])
    """

    accepts_soft_targets = False

    def __init__(
        self,
        net: NetFactory | nn.Module,
        num_classes: int = 2,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerSpec | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes=num_classes, optimizer=optimizer, scheduler=scheduler, label_smoothing=label_smoothing
        )
        check_int("num_classes", num_classes, low=2)
        built = net if isinstance(net, nn.Module) else net() if callable(net) else None
        if not isinstance(built, nn.Module):
            raise ConfigError(f"`net` must be an nn.Module or a factory returning one; got {net!r}.")
        labels = getattr(getattr(built, "config", None), "num_labels", num_classes)
        if labels != num_classes:
            raise ConfigError(f"`num_classes` ({num_classes}) must equal the model's config.num_labels ({labels}).")
        self.save_hyperparameters(
            {"num_classes": num_classes, "net": type(built).__name__, "label_smoothing": float(label_smoothing)}
        )
        self.net = built

    @override
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pad = getattr(getattr(self.net, "config", None), "pad_token_id", None)
        mask = None if pad is None else (input_ids != pad).long()
        return self.net(input_ids=input_ids, attention_mask=mask).logits
