"""The direction of a monitored metric, from its name: ``val/acc`` is maximized, ``val_loss`` minimized.

Shared by :class:`lightning_reg.EarlyStopping`, the checkpoint callbacks and the sweeper's checks, so that one
table says which names have a known direction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lightning_reg.errors import ConfigError

__all__ = ["KNOWN_METRICS", "check_mode_matches", "infer_mode", "metric_name", "named_direction"]


#: Metrics whose direction is known, by the last component of a monitor's name (see :func:`metric_name`).
KNOWN_METRICS: Mapping[str, str] = {
    **dict.fromkeys(
        ("loss", "nll", "error", "err", "mse", "mae", "rmse", "mape", "msle", "perplexity", "ppl", "cer", "wer"),
        "min",
    ),
    **dict.fromkeys(
        (
            "acc", "accuracy", "top1_acc", "top5_acc", "auc", "auroc", "roc_auc", "ap",
            "average_precision", "f1", "f1_score", "fbeta", "precision", "recall", "r2", "r2_score", "iou", "miou",
            "mean_iou", "jaccard", "dice", "map", "map50", "map_50", "psnr", "ssim", "bleu",
        ),
        "max",
    ),
}  # fmt: skip
_SPLIT_PREFIX = re.compile(r"^(?:val|valid|validation|train|training|test|eval)[_-]")
_SPLIT_SUFFIX = re.compile(r"[_-](?:epoch|step)$")


def metric_name(monitor: str) -> str:
    """The metric a monitor names: its last ``/`` or ``.`` component, lower case, without a stage prefix
    (``val_``, ``train_``, ``test_`` ...) or Lightning's ``_epoch``/``_step`` suffix.

    Example:
        >>> metric_name("val/acc"), metric_name("test_val_loss"), metric_name("val_r2_score"), metric_name("val/1-acc")
        ('acc', 'loss', 'r2_score', '1-acc')
        >>> metric_name("train_loss_epoch")
        'loss'
    """
    name = re.split(r"[/.]", str(monitor).lower())[-1]
    name = _SPLIT_SUFFIX.sub("", name)
    while _SPLIT_PREFIX.match(name):
        name = _SPLIT_PREFIX.sub("", name, count=1)
    return name


def named_direction(monitor: str) -> str | None:
    """``"max"`` or ``"min"`` when the monitor names a known metric (:data:`KNOWN_METRICS`), else None.

    Only the whole metric name counts, never a piece of it: ``val/1-acc`` (an error rate) is not known.

    Example:
        >>> named_direction("val/acc"), named_direction("val_loss"), named_direction("val/1-acc")
        ('max', 'min', None)
    """
    return KNOWN_METRICS.get(metric_name(monitor))


def check_mode_matches(monitor: str | None, mode: str, option: str = "mode") -> None:
    """Refuse a ``mode`` that contradicts a known metric's direction (``mode="max"`` on ``val/loss``).

    Example:
        >>> check_mode_matches("val/loss", "min"), check_mode_matches("val/1-acc", "min")
        (None, None)
    """
    if not monitor or mode == "auto":
        return
    named = named_direction(monitor)
    if named is not None and mode != named:
        raise ConfigError(
            f"`{option}` must be {named!r} for monitor {monitor!r} ({metric_name(monitor)!r} is a known metric: "
            f"{'higher' if named == 'max' else 'lower'} is better); got {mode!r}. Use mode=auto, or log it under "
            "another name if it really goes the other way."
        )


def infer_mode(monitor: str) -> str:
    """``mode="auto"``: the known metric's direction, else ``"min"`` (Lightning's default).

    Example:
        >>> infer_mode("val/acc"), infer_mode("val_f1"), infer_mode("val/loss"), infer_mode("abc")
        ('max', 'max', 'min', 'min')
    """
    return named_direction(monitor) or "min"
