"""``lightning_reg.EarlyStopping`` against Keras 3's ``keras.callbacks.EarlyStopping`` on the same sequences.

Each sequence is a monitored value per epoch. Ours runs it through a real Lightning fit (the module logs the value
at each validation and snapshots its weights there, so the restored epoch can be read off the final weights);
Keras runs it through a real ``model.fit`` with the torch backend (a callback writes the value into the epoch's
logs and marks the kernel with the epoch number just before Keras' callback looks). Epochs count from 0.

``KERAS`` is what Keras does, measured with Keras 3.15.1 by ``test_keras_itself_gives_the_table`` (skipped without
the ``parity`` extra). ``OURS`` overrides it on the rows where we differ on purpose; ``docs/early_stopping.md``
has the same table with the reasons.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from test_early_stopping import fit, scripted

from lightning_reg import EarlyStopping
from lightning_reg.errors import ConfigError

NAN = math.nan


@dataclass(frozen=True)
class Sequence:
    id: str
    monitor: str
    values: list[float]
    kwargs: dict[str, Any] = field(default_factory=dict)  # the same for Keras and ours
    keras: tuple[int | None, int | None] = (None, None)  # Keras: (stop epoch or None, restored epoch or None)
    ours: Any = None  # a deliberate difference: (stop, restored), or the error ours raises; None: as Keras

    @property
    def keras_kwargs(self) -> dict[str, Any]:
        kw = {"patience": 0, **self.kwargs}  # Keras' default patience is 0, Lightning's (and ours) 3: give it
        return {k: v for k, v in kw.items() if k != "check_finite"}


LOSS = [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7, 0.75, 0.8, 0.85]
SEQUENCES = [
    Sequence("patience", "val_loss", [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.9], {"patience": 3}, (5, None)),
    Sequence("patience_0", "val_loss", [1.0, 0.9, 0.95, 0.8], {"patience": 0}, (2, None)),
    Sequence(
        "min_delta", "val_accuracy", [0.5, 0.6, 0.605, 0.609, 0.62, 0.62, 0.62, 0.62], {"min_delta": 0.01, "patience": 2},
        (3, None),
    ),
    Sequence("auto_acc", "val_acc", [0.5, 0.6, 0.55, 0.58, 0.7], {"patience": 2}, (3, None)),
    Sequence("auto_loss", "val_loss", [0.5, 0.6, 0.55, 0.58, 0.4], {"patience": 2}, (2, None)),
    Sequence("baseline_met", "val_loss", [1.0, 0.45, 0.5, 0.5, 0.5, 0.5, 0.5], {"baseline": 0.5, "patience": 3}, (4, None)),
    Sequence("restore_after_stop", "val_loss", LOSS, {"patience": 3, "restore_best_weights": True}, (5, 2)),
    Sequence("restore_without_stop", "val_loss", LOSS[:7], {"patience": 10, "restore_best_weights": True}, (None, 2)),
    Sequence(
        "restore_min_delta", "val_loss", [1.0, 0.8, 0.795, 0.79, 0.9, 0.9, 0.9], {"min_delta": 0.01, "patience": 3,
        "restore_best_weights": True}, (4, 1),
    ),
    Sequence(
        "baseline_rising_below", "val_acc", [0.5, 0.54, 0.58, 0.62, 0.66, 0.7, 0.74, 0.76], {"baseline": 0.8,
        "patience": 2}, (None, None),
    ),
    Sequence("baseline_patience_1", "val_acc", [0.5, 0.6, 0.55, 0.7, 0.65, 0.6, 0.6], {"baseline": 0.8, "patience": 1}, (2, None)),
    Sequence(
        "baseline_never_beaten_restore", "val_loss", [1.0, 0.8, 0.9, 0.85, 0.95, 0.9], {"baseline": 0.3, "patience": 2,
        "restore_best_weights": True}, (2, 1),
    ),
    Sequence(
        "warmup_3_restore", "val_loss", [0.9, 0.5, 0.5, 0.6, 0.65, 0.7, 0.7, 0.7], {"start_from_epoch": 3, "patience": 2,
        "restore_best_weights": True}, (5, 3),
    ),
    Sequence(
        "warmup_2_restore", "val_loss", [0.5, 0.9, 0.8, 0.7, 0.75, 0.8, 0.85, 0.9], {"start_from_epoch": 2, "patience": 2,
        "restore_best_weights": True}, (5, 3),
    ),
    Sequence("r2_auto", "val_r2_score", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], {"patience": 2}, (None, None)),
    Sequence("nan_check_finite_off", "val_loss", [1.0, 0.8, NAN, 0.7, 0.75, 0.8, 0.85], {"patience": 2, "check_finite": False},
             (5, None)),
    # Deliberate differences (docs/early_stopping.md says why):
    Sequence(
        "negative_min_delta", "val_loss", [1.0, 0.9, 0.905, 0.91, 0.915, 0.95, 0.96, 0.97, 0.98, 0.99],
        {"min_delta": -0.01, "patience": 2}, (3, None), ours=(6, None),  # Lightning's signed meaning
    ),
    Sequence("nan_stops", "val_loss", [1.0, 0.8, NAN, 0.7, 0.75, 0.8, 0.85], {"patience": 2}, (5, None), ours=(2, None)),
    Sequence("max_on_loss", "val_loss", [1.0, 1.1, 1.2, 1.3], {"mode": "max", "patience": 2}, (None, None),
             ours=r"`mode` must be 'min' for monitor 'val_loss'"),
]  # fmt: skip


def run_ours(seq: Sequence) -> tuple[int | None, int | None]:
    module = scripted(seq.values, monitor=seq.monitor)
    es = EarlyStopping(seq.monitor, log_prefix=None, **seq.kwargs)
    fit(module, es, max_epochs=len(seq.values))
    restored = None
    if seq.kwargs.get("restore_best_weights"):
        final = module.state_dict()
        matches = [e for e, snap in module.snapshots.items() if all(torch.equal(final[k], snap[k]) for k in final)]
        assert len(matches) == 1, matches
        restored = matches[0]
        assert es.restorer is not None and es.restorer.restored_epoch == restored
    return (es.stopped_epoch if es.stop_reason else None), restored


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.id)
def test_ours_stops_and_restores_as_the_table_says(seq: Sequence):
    if isinstance(seq.ours, str):
        with pytest.raises(ConfigError, match=seq.ours):
            run_ours(seq)
        return
    assert run_ours(seq) == (seq.keras if seq.ours is None else seq.ours)


def run_keras(seq: Sequence) -> tuple[int | None, int | None]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="Keras 3 is in the `parity` extra: pip install -e '.[parity]'")
    import numpy as np

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    # Keras' mode "auto" takes the direction from the compiled metric of that name: compile one.
    name = seq.monitor.removeprefix("val_")
    metric = {"r2_score": keras.metrics.R2Score, "acc": keras.metrics.BinaryAccuracy}.get(name)
    metric = keras.metrics.BinaryAccuracy if name == "accuracy" else metric
    metrics = [metric(name=name)] if metric is not None else []
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse", metrics=metrics)

    class Script(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs[seq.monitor] = seq.values[epoch]
            self.model.layers[0].kernel.assign(np.array([[float(epoch)]], dtype="float32"))

    es = keras.callbacks.EarlyStopping(monitor=seq.monitor, **seq.keras_kwargs)
    x = np.zeros((4, 1), "float32")
    history = model.fit(x, x, epochs=len(seq.values), batch_size=4, callbacks=[Script(), es], verbose=0)
    stopped = es.stopped_epoch if len(history.history["loss"]) < len(seq.values) else None
    restored = round(float(model.layers[0].kernel.numpy()[0, 0])) if seq.kwargs.get("restore_best_weights") else None
    return stopped, restored


@pytest.mark.parametrize("seq", SEQUENCES, ids=lambda s: s.id)
def test_keras_itself_gives_the_table(seq: Sequence):
    assert run_keras(seq) == seq.keras
