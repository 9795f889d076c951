"""ModelCheckpoint whose files are replaced atomically: a killed run never leaves a half-written checkpoint.

Lightning 2.6 writes a local checkpoint inside an fsspec transaction: the bytes go to a temporary file made
by ``tempfile.mkstemp()`` (in ``$TMPDIR``, usually ``/tmp``) and are then moved over the target with
``shutil.move``. When ``$TMPDIR`` is on another filesystem than the checkpoint directory (a tmpfs ``/tmp``,
a cluster's node-local scratch), ``shutil.move`` falls back to *copying* into the target path, truncating
the previous good checkpoint first; a run killed during that copy leaves a truncated ``last.ckpt``.
:class:`AtomicModelCheckpoint` writes next to the target (same directory, so same filesystem), flushes it
to disk and then ``os.replace``-s it over the target, which is atomic on POSIX and Windows. It does so through
Lightning's public plugin for checkpoint files, a ``CheckpointIO`` (:class:`AtomicCheckpointIO`), which it gives the
Trainer's strategy at setup; every checkpoint the Trainer writes then goes through it.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_reg.atomic import TMP_SUFFIX, WriteError, atomic_write, is_filesystem_error, replace_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, except that a local checkpoint file is written next to its target and moved
    over it atomically (:func:`lightning_reg.atomic.atomic_write`): the previous file or the new one, never a part.

    A write that fails (a full disk) removes its partial file, keeps the previous checkpoint and raises
    :class:`~lightning_reg.atomic.WriteError`. Remote paths (``s3://`` ...) are Lightning's own saving.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "checkpoints" / "last.ckpt"
        >>> io = AtomicCheckpointIO()
        >>> io.save_checkpoint({"epoch": 3}, path)
        >>> io.load_checkpoint(path)["epoch"], [p.name for p in path.parent.iterdir()]
        (3, ['last.ckpt'])
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        try:
            with atomic_write(path, "wb") as fh:
                torch.save(checkpoint, fh)
        except AttributeError as err:  # as TorchCheckpointIO: an unpicklable hyperparameter is dropped, with a warning
            key = pl.LightningModule.CHECKPOINT_HYPER_PARAMS_KEY
            checkpoint.pop(key, None)
            rank_zero_warn(f"Warning, `{key}` dropped from checkpoint. An attribute is not picklable: {err}")
            with atomic_write(path, "wb") as fh:
                torch.save(checkpoint, fh)


def use_atomic_checkpoint_io(trainer: pl.Trainer) -> None:
    """Give ``trainer``'s strategy an :class:`AtomicCheckpointIO` when it has Lightning's default ``TorchCheckpointIO``
    (another plugin, such as XLA's or an asynchronous one, is the user's choice and is kept)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


def save_checkpoint_atomically(trainer: pl.Trainer, filepath: str, weights_only: bool = False) -> None:
    """``trainer.save_checkpoint(filepath)`` (on every rank: a collective call), written to ``<file>.tmp`` in the
    same directory and moved over ``filepath`` atomically by rank 0. A failed write (a full disk) removes the
    partial file, keeps the previous checkpoint and raises :class:`~lightning_reg.atomic.WriteError`."""
    tmp = filepath + TMP_SUFFIX
    try:
        trainer.save_checkpoint(tmp, weights_only)  # all ranks; ends with a barrier
    except OSError as err:  # a full disk, no permission: the partial file goes, the previous one stays
        if trainer.is_global_zero and os.path.isfile(tmp):
            os.unlink(tmp)
        if is_filesystem_error(err):
            raise WriteError(filepath, err) from err
        raise
    if trainer.is_global_zero and not os.path.exists(tmp):
        # Lightning 2.6.6's _atomic_save (fabric/utilities/cloud_io.py) catches a PermissionError and drops it (upstream
        # Lightning-AI/pytorch-lightning#21800, fixed after 2.6.6): the
        # save "succeeds" with nothing written, and the run would train on with no checkpoint. Find the cause.
        try:
            with open(tmp, "wb"):
                pass
            os.unlink(tmp)
            cause = OSError(errno.EIO, "the checkpoint was not written (no error was raised)")
        except OSError as err:
            cause = err
        raise WriteError(filepath, cause) from cause
    if trainer.is_global_zero:
        if os.path.isfile(tmp):
            replace_atomically(tmp, filepath)
        elif os.path.isdir(tmp):  # a sharded checkpoint directory: no single file to swap in
            if os.path.isdir(filepath):
                shutil.rmtree(filepath)
            os.replace(tmp, filepath)
    trainer.strategy.barrier("AtomicModelCheckpoint.replace")


class SaveOnSigterm(pl.Callback):
    """On SIGTERM (a SLURM preemption, ``scancel``, a ``kill``), write the run's ``last.ckpt`` before it ends.

    Lightning's signal connector turns SIGTERM into ``SIGTERMException`` at the end of the current batch (on
    every rank, in sync); this callback's ``on_exception`` then saves the trainer's state atomically to
    ``filepath``, so that ``ckpt_path=last`` resumes the run. The entry point adds it to every run. Under DDP the
    signal handler only notes the signal, and rank 0's note is broadcast at the end of every training step, so every
    rank stops at the same step (:func:`~lightning_reg._lightning_internals.sigterm_flag_only`); Lightning's own
    handling hangs DDP when the ranks see the signal at different moments.

    Example:
        >>> cb = SaveOnSigterm("run/checkpoints/last.ckpt")
        >>> cb.saved is None
        True
    """

    def __init__(self, filepath: str | os.PathLike[str]) -> None:
        self.filepath = os.fspath(filepath)
        self.saved: str | None = None
        self._sync: Callable[[], None] | None = None  # under DDP: rank 0's SIGTERM to every rank, once a step

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync = None
        if trainer.world_size > 1:  # Lightning's own handling hangs DDP when the ranks see the signal apart
            from lightning_reg._lightning_internals import sigterm_flag_only

            self._sync = sigterm_flag_only(trainer)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self._sync is not None:
            self._sync()  # every rank, same step: rank 0's SIGTERM becomes every rank's flag at once

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        os.makedirs(os.path.dirname(self.filepath) or ".", exist_ok=True)
        save_checkpoint_atomically(trainer, self.filepath)
        self.saved = self.filepath


class AtomicModelCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) that replaces checkpoint files atomically.

    Each checkpoint is written to a temporary file in the target directory and then renamed over ``<file>``
    with ``os.replace`` (:class:`AtomicCheckpointIO`, given to the Trainer's strategy at setup), so a reader (or a resumed run) sees either the previous complete checkpoint or
    the new complete one, never a partial file, however the writing process dies; a write that fails (a full
    disk) removes its partial file and raises :class:`~lightning_reg.atomic.WriteError`, one line naming the
    checkpoint and the cause, with the previous checkpoint intact. Remote paths (``s3://``
    ...) use Lightning's own saving unchanged, and so do strategies with their own ``CheckpointIO`` or their own
    saving (XLA, DeepSpeed, sharded FSDP). The shipped ``callbacks/last_checkpoint`` and ``callbacks/model_checkpoint`` configs
    use this class.

    Example:
        >>> import lightning.pytorch as pl
        >>> ckpt = AtomicModelCheckpoint(dirpath="checkpoints", filename="last", monitor=None,
        ...                              enable_version_counter=False)
        >>> trainer = pl.Trainer(callbacks=[ckpt], logger=False)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from lightning_reg.core.stopping import check_mode_matches, infer_mode
        from lightning_reg.errors import ConfigError

        dirpath = kwargs.get("dirpath", args[0] if args else None)
        if dirpath is not None and not isinstance(dirpath, (str, os.PathLike)):
            raise ConfigError(
                f"`dirpath` must be a directory path (str or Path) or None; got {dirpath!r} ({type(dirpath).__name__})."
            )
        if dirpath is not None and "://" not in str(dirpath) and os.path.isfile(dirpath):
            raise ConfigError(f"`dirpath` must be a directory for checkpoints; {str(dirpath)!r} is a file.")
        monitor, mode = kwargs.get("monitor"), kwargs.get("mode", "min")
        if mode == "auto":  # our extension: the direction from the metric's name (Lightning takes min/max only)
            kwargs["mode"] = mode = infer_mode(monitor) if monitor else "min"
        check_mode_matches(monitor, mode)
        super().__init__(*args, **kwargs)

    @property
    @override
    def state_key(self) -> str:
        # Keep Lightning's key, so checkpoints written with either class resume into the other. Lightning reads it
        # for every hook of every callback (its profiler's name), so it is kept per the five settings it depends on.
        settings = (
            self.monitor,
            self.mode,
            self._every_n_train_steps,
            self._every_n_epochs,
            self._train_time_interval,
        )
        kept = self.__dict__.get("_lr_state_key")
        if kept is None or kept[0] != settings:
            key = super().state_key
            kept = self.__dict__["_lr_state_key"] = (settings, "ModelCheckpoint" + key[len(type(self).__qualname__) :])
        return kept[1]

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        use_atomic_checkpoint_io(trainer)


__all__ = [
    "AtomicCheckpointIO",
    "AtomicModelCheckpoint",
    "SaveOnSigterm",
    "replace_atomically",
    "save_checkpoint_atomically",
    "use_atomic_checkpoint_io",
]
