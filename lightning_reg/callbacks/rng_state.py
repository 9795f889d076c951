"""Checkpoint the random number generators so a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from typing_extensions import override

from lightning_reg._lightning_internals import replaying_epoch_end
from lightning_reg.callbacks.log_helpers import warn_if_state_missing

__all__ = ["RNGState", "capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) RNG states as plain types and tensors (``weights_only``-safe)."""
    # The dict form holds the same values as the legacy tuple that restore_rng_state sets back.
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(np_state["bit_generator"]),
            "keys": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "cached_gaussian": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; missing entries are left alone."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state(
            (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RNGState(pl.Callback):
    """Save the RNG states in every checkpoint and put them back when training resumes.

    Lightning restores weights, optimizer and loop state but not the random generators, so after a
    resume the shuffle order, dropout masks and random augmentations differ from an uninterrupted run.
    This callback stores the states at save time and restores them just before the resumed fit loop
    creates its first training iterator, the next random draw the uninterrupted run makes after the
    checkpoint was written.
    Each rank stores its own states, so it also holds under DDP. The train entry point always adds it.

    Example:
        >>> import lightning.pytorch as pl
        >>> trainer = pl.Trainer(callbacks=[RNGState()], logger=False)  # then fit(..., ckpt_path=...)
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @override
    def state_dict(self) -> dict[str, Any]:
        return capture_rng_state()

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(
            self,
            trainer,
            checkpoint,
            "the random generators are not restored, so shuffling, dropout masks and augmentation differ from an uninterrupted run.",
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    # Restore once the checkpoint is loaded (on_fit_start) and again after the sanity check, which draws
    # from the global generator when it runs; Lightning then builds the train iterator, exactly the
    # next draw an uninterrupted run makes after the checkpoint was written.
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_state(self._pending)

    @override
    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_state(self._pending)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint written at the end of the last validation of an epoch (ModelCheckpoint's default)
        # makes Lightning replay that epoch's end: the iterator it created at run start serves only the
        # replay, and the next epoch creates a fresh one after `on_train_epoch_start`, which is where the
        # uninterrupted run made its next draw. Restore again there.
        if self._pending is not None and not replaying_epoch_end(trainer):
            self._pending = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            restore_rng_state(self._pending)
            self._pending = None
