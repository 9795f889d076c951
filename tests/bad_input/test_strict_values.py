"""Issue 14: wrong types for every public constructor argument are refused naming the argument, and a run whose
final losses are not finite ends with status ``diverged``."""

from __future__ import annotations

import inspect
import math

import pytest

import lightning_reg
from lightning_reg.errors import ConfigError

# Required arguments each class needs to get as far as checking the others.
REQUIRED = {
    "EarlyStopping": {"monitor": "val/loss"},
    "ScheduledDropout": {"schedule": 0.1},
    "MaxNorm": {"max_norm": 3.0},
    "MNISTDataModule": {"data_dir": "data"},
    "FashionMNISTDataModule": {"data_dir": "data"},
    "CIFAR10DataModule": {"data_dir": "data"},
    "ImageFolderDataModule": {"data_dir": "data"},
}
CLASSES = [
    "EarlyStopping",
    "ScheduledDropout",
    "MaxNorm",
    "WeightPenalty",
    "DigitsDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "AugmentConfig",
]


class Wrong:
    """A value of a type no argument takes."""

    def __repr__(self) -> str:
        return "<Wrong>"


def _cases():
    for cls_name in CLASSES:
        cls = getattr(lightning_reg, cls_name)
        for name, p in inspect.signature(cls).parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in REQUIRED.get(cls_name, {}):
                continue
            if isinstance(p.default, (bool, int, float, str)) and p.default is not None:
                yield pytest.param(cls_name, name, id=f"{cls_name}.{name}")


@pytest.mark.parametrize(("cls_name", "arg"), list(_cases()))
def test_a_wrong_type_names_the_argument(cls_name: str, arg: str) -> None:
    cls = getattr(lightning_reg, cls_name)
    kwargs = {**REQUIRED.get(cls_name, {}), arg: Wrong()}
    with pytest.raises((ConfigError, TypeError)) as info:
        cls(**kwargs)
    assert arg in str(info.value), str(info.value)


def test_non_finite_final_loss_is_status_diverged(compose_cfg) -> None:
    from lightning_reg.app.train import train

    summary = train(compose_cfg("trainer=debug", "optimizer=sgd", "optimizer.lr=1e12", "test=false"))
    assert not math.isfinite(summary["final"]["train/loss"]) or not math.isfinite(summary["final"]["val/loss"])
    assert summary["status"] == "diverged"
