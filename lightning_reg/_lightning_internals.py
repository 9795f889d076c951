"""Every private Lightning name that lightning_reg relies on, in one place (torch's are in ``_torch_internals``).

These names are not part of Lightning's public API and can change in any release. Each is used only here, and
each entry says above it why no public API serves (or that it uses public names only, for a version difference);
the rest of the package calls the small, named wrappers below. ``tests/test_internals_canary.py``
checks every one of them against the installed versions and names the internal and the version when one
moves, so an upgrade (or the CI step on the oldest supported Lightning) says exactly what broke.

Version differences of *public* names (``EarlyStoppingReason``, ``WeightAveraging``, both new in Lightning
2.6) are handled here too, so the supported range is visible in one file.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any

import lightning
import lightning.pytorch as pl
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers.csv_logs import ExperimentWriter as _CSVExperimentWriter
from torch import nn
from typing_extensions import override

__all__ = [
    "HAS_WEIGHT_AVERAGING",
    "LIGHTNING_VERSION",
    "PYTREE_MODULE",
    "AppendingCSVExperimentWriter",
    "EarlyStoppingReason",
    "csv_logger_experiment",
    "averaged_module",
    "averaging_callbacks",
    "evaluated_module",
    "hydra_subprocess_command",
    "missing_target_reason",
    "rank_zero_loggers",
    "replaying_epoch_end",
    "sigterm_flag_only",
    "trainer_callbacks",
    "trainer_log_every_n_steps",
    "store_epoch_end_values",
    "trainer_of_closure",
    "weight_averaging_class",
    "weights_only_kwargs",
]

LIGHTNING_VERSION: str = lightning.__version__
_TEST_TAKES_WEIGHTS_ONLY: bool = "weights_only" in inspect.signature(pl.Trainer.test).parameters

# --- Public names that only recent Lightning has -------------------------------------------------------------

# Why here: a public name of Lightning 2.6 that 2.5 lacks; the stand-in keeps its values so checkpoints read alike.
try:  # Lightning >= 2.6
    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
except ImportError:  # Lightning 2.5: same members and values as 2.6's enum, so checkpoints read alike

    class EarlyStoppingReason(Enum):  # type: ignore[no-redef]
        """Why early stopping stopped (Lightning 2.6's enum, for older Lightning)."""

        NOT_STOPPED = 0
        STOPPING_THRESHOLD = 1
        DIVERGENCE_THRESHOLD = 2
        PATIENCE_EXHAUSTED = 3
        NON_FINITE_METRIC = 4


# Why here: a public class of Lightning 2.6 that 2.5 lacks (the version difference, in one place).
def weight_averaging_class() -> type[pl.Callback] | None:
    """Lightning's ``WeightAveraging`` base class (2.6+), or None on a Lightning without it.

    Example:
        >>> weight_averaging_class() is None or issubclass(weight_averaging_class(), pl.Callback)
        True
    """
    try:
        from lightning.pytorch.callbacks import WeightAveraging
    except ImportError:
        return None
    return WeightAveraging


HAS_WEIGHT_AVERAGING: bool = weight_averaging_class() is not None


# Why here: a public argument of Lightning 2.6 that 2.5 lacks.
def weights_only_kwargs(weights_only: bool | None) -> dict[str, bool | None]:
    """``{"weights_only": ...}`` for ``Trainer.fit/validate/test`` on Lightning 2.6+, ``{}`` before.

    Lightning 2.5 has no such argument (it loads checkpoints with ``torch.load(weights_only=False)``).

    Example:
        >>> weights_only_kwargs(True) in ({"weights_only": True}, {})
        True
    """
    return {"weights_only": weights_only} if _TEST_TAKES_WEIGHTS_ONLY else {}


#: Config targets that the installed Lightning may lack, with the first Lightning that has them.
_NEWER_TARGETS: dict[str, str] = {
    "lightning.pytorch.callbacks.WeightAveraging": "2.6",
    "lightning.pytorch.callbacks.EMAWeightAveraging": "2.6",
    "lightning.pytorch.callbacks.weight_averaging.WeightAveraging": "2.6",
    "lightning.pytorch.callbacks.weight_averaging.EMAWeightAveraging": "2.6",
}


# Why here: config targets that exist only from Lightning 2.6 on.
def missing_target_reason(target: str) -> str | None:
    """Why ``target`` (a config ``_target_``) cannot be built on the installed Lightning, or None if it can.

    Example:
        >>> missing_target_reason("lightning.pytorch.callbacks.ModelCheckpoint") is None
        True
    """
    needs = _NEWER_TARGETS.get(target)
    if needs is None or HAS_WEIGHT_AVERAGING:
        return None
    return f"{target.rsplit('.', 1)[-1]} needs Lightning >= {needs}; the installed Lightning is {LIGHTNING_VERSION}"


# --- Public Trainer attributes that Trainer's type does not declare ------------------------------------------
# Lightning's connectors assign ``trainer.callbacks`` and ``trainer.log_every_n_steps`` in ``Trainer.__init__``
# (``_CallbackConnector.on_trainer_init``, ``_LoggerConnector.on_trainer_init``); both are documented, but the
# ``Trainer`` class never declares them, so a type checker cannot see them. Read them here, typed, once.


# Why here: public and documented, but undeclared on Trainer, so typed once here (no private name).
def trainer_callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    """``trainer.callbacks``, typed.

    Example:
        >>> mine = pl.Callback()
        >>> mine in trainer_callbacks(pl.Trainer(logger=False, callbacks=[mine]))
        True
    """
    callbacks: list[pl.Callback] = trainer.callbacks  # type: ignore[attr-defined]  # assigned by the connector, undeclared
    return callbacks


# Why here: public and documented, but undeclared on Trainer, so typed once here (no private name).
def trainer_log_every_n_steps(trainer: pl.Trainer) -> int:
    """``trainer.log_every_n_steps``, typed.

    Example:
        >>> trainer_log_every_n_steps(pl.Trainer(logger=False, log_every_n_steps=7))
        7
    """
    every: int = trainer.log_every_n_steps  # type: ignore[attr-defined]  # assigned by the connector, undeclared
    return every


# --- LightningModule / Callback ------------------------------------------------------------------------------


# Why not public: optimizer.step(closure) gets no trainer; SAM needs it to refuse gradient accumulation, and the
# closure's private layout is the only way from the optimizer back to the module.
def trainer_of_closure(closure: Any) -> pl.Trainer | None:
    """The Trainer behind a closure that Lightning passed to ``optimizer.step``, or None for another closure: the
    precision plugins pass ``functools.partial(self._wrap_closure, model, optimizer, closure)`` (private layout).

    Example:
        >>> trainer_of_closure(lambda: 0.0) is None
        True
    """
    for arg in getattr(closure, "args", ()):
        if isinstance(arg, pl.LightningModule):
            try:
                trainer = arg.trainer
            except RuntimeError:  # a module attached to no Trainer
                return None
            return trainer if isinstance(trainer, pl.Trainer) else None  # not Fabric's stand-in
    return None


# Why not public: WeightAveraging exposes no accessor for its averaged copy (``_average_model``).
def averaged_module(callback: pl.Callback) -> nn.Module | None:
    """The averaged copy of the model held by a ``WeightAveraging`` callback (private ``_average_model``), or None."""
    average = getattr(callback, "_average_model", None)
    return None if average is None else average.module


# Why here: public names only; beside averaged_module, which it serves.
def averaging_callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    """Lightning's ``WeightAveraging`` callbacks (``EMAWeightAveraging`` and others) of ``trainer`` (none before 2.6).

    Example:
        >>> averaging_callbacks(pl.Trainer(logger=False))
        []
    """
    cls = weight_averaging_class()
    return [] if cls is None else [cb for cb in trainer_callbacks(trainer) if isinstance(cb, cls)]


# Why here: public names only; the weights validation evaluated, through averaged_module.
def evaluated_module(trainer: pl.Trainer) -> nn.Module:
    """The module whose weights validation just evaluated, read at ``on_validation_end``: ``WeightAveraging`` swaps
    its average in for validation and back at ``on_validation_epoch_end``, so then it is its averaged copy; without
    weight averaging, the LightningModule itself."""
    for cb in averaging_callbacks(trainer):
        average = averaged_module(cb)
        if average is not None:
            return average
    return trainer.lightning_module


# --- Loops ---------------------------------------------------------------------------------------------------


# Why not public: Lightning exposes no "resumed at the end of an epoch" flag; the loops' restart state is internal.
def replaying_epoch_end(trainer: pl.Trainer) -> bool:
    """True when a resumed fit replays the end of the epoch its checkpoint was written in: the loops' internal
    ``restarted_on_epoch_end``/``restarted_on_last`` (Lightning 2.5+; 2.4 lacks them, hence our 2.5 floor)."""
    loop = trainer.fit_loop
    return bool(loop.restarted_on_epoch_end or getattr(loop.epoch_loop, "restarted_on_last", False))


# --- Lightning's DDP subprocess launcher ---------------------------------------------------------------------


# Why not public: the DDP launcher builds Hydra children's commands in a private module function, with no
# argument or hook to change it; a Hydra job's children must rerun the job's own config.
@contextlib.contextmanager
def hydra_subprocess_command(command: Callable[[int], tuple[Sequence[str], str]]) -> Iterator[None]:
    """While active, Lightning's subprocess DDP launcher starts local rank ``r`` with ``command(r)``.

    Under Hydra the launcher builds each child's command with its module-level ``_hydra_subprocess_cmd``
    (private); this swaps that function and puts it back afterwards.
    """
    from lightning.pytorch.strategies.launchers import subprocess_script as launcher_mod

    original = launcher_mod._hydra_subprocess_cmd
    launcher_mod._hydra_subprocess_cmd = command  # type: ignore[assignment]  # a compatible callable, not a def
    try:
        yield
    finally:
        launcher_mod._hydra_subprocess_cmd = original


# Why not public: no public API changes Lightning's SIGTERM handler (private connector and composed handler). Lightning
# 2.6's runs a collective in the handler and its loops read each rank's own flag: ranks signalled apart hang DDP.
def sigterm_flag_only(trainer: pl.Trainer) -> Callable[[], None] | None:
    """For this fit, SIGTERM only notes the signal and forwards it to the launcher's children; the returned ``sync``,
    called at the same point on every rank, broadcasts rank 0's note and sets every rank's flag together."""
    import signal

    connector, composed = trainer._signal_connector, signal.getsignal(signal.SIGTERM)
    handlers, notifier = getattr(composed, "signal_handlers", None), connector._sigterm_notifier_fn
    if not isinstance(handlers, list) or notifier not in handlers:
        return None
    noted = [False]

    def note(signum: Any, frame: Any) -> None:
        logging.getLogger(__name__).info("[rank: %d] Received SIGTERM: %s", trainer.global_rank, signum)
        if not noted[0] and trainer.strategy.launcher is not None:
            trainer.strategy.launcher.kill(signum)
        noted[0] = True

    def sync() -> None:
        if trainer.strategy.broadcast(noted[0], src=0):
            connector.received_sigterm = True

    handlers[handlers.index(notifier)] = note
    return sync


# --- Lightning's console messages ----------------------------------------------------------------------------

#: Lightning's private pytree module. Its ``_tree_flatten`` builds ``LeafSpec()``, which torch >= 2.10 deprecates
#: with a FutureWarning on every fit (``lightning_reg.app.run_log`` filters that one warning from this module only).
# Why not public: names the private module whose warning is filtered (a module name, not an API call).
PYTREE_MODULE = "lightning.pytorch.utilities._pytree"


# Why here: public logger names, but which ones Lightning's rank_zero messages use is an implementation detail.
def rank_zero_loggers() -> list[logging.Logger]:
    """The loggers that Lightning's ``rank_zero_info`` and ``rank_zero_warn`` messages are written to.

    They log through lightning_utilities' module-level ``log``, which Lightning points at
    ``lightning.pytorch.utilities.rank_zero`` (``lightning.fabric.utilities.rank_zero`` when only Fabric is
    imported).

    Example:
        >>> "lightning.pytorch.utilities.rank_zero" in [lg.name for lg in rank_zero_loggers()]
        True
    """
    from lightning_utilities.core import rank_zero as core

    names = {"lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero", core.log.name}
    return [logging.getLogger(name) for name in sorted(names)]


# --- Loggers -------------------------------------------------------------------------------------------------


# Why here: public (Lightning's get_filesystem, fsspec's LocalFileSystem); the CSV writer below uses it.
def _is_local(path: str) -> bool:
    """A path on the local disk (public: fsspec's filesystem for it, as Lightning picks it)."""
    return isinstance(get_filesystem(path), LocalFileSystem)


# Why not public: CSVLogger has no option to continue a metrics.csv; its writer deletes it in the private
# ``_check_log_dir_exists``, and a new column goes through the private ``_rewrite_with_new_header``.
class AppendingCSVExperimentWriter(_CSVExperimentWriter):
    """Lightning's CSV experiment writer, except that an existing ``metrics.csv`` is continued, never deleted.

    Lightning 2.6's writer removes ``metrics.csv`` when its directory is not empty (its private
    ``_check_log_dir_exists``), so a resumed run lost every row logged before the resume. Here the existing
    header is read back, new rows are appended under it, and a new column rewrites the file with every old row
    kept (Lightning's own ``_rewrite_with_new_header``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> log_dir = tempfile.mkdtemp()
        >>> first = AppendingCSVExperimentWriter(log_dir)
        >>> first.log_metrics({"loss": 1.0}, step=0); first.save()
        >>> resumed = AppendingCSVExperimentWriter(log_dir)  # a resumed run, same directory
        >>> resumed.log_metrics({"loss": 0.5, "acc": 0.75}, step=1); resumed.save()  # and a new column
        >>> Path(log_dir, "metrics.csv").read_text().splitlines()  # the first row kept
        ['acc,loss,step', ',1.0,0', '0.75,0.5,1']
    """

    @override
    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(set(header))

    @override
    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        if not _is_local(self.metrics_file_path):
            super()._rewrite_with_new_header(fieldnames)
            return
        from lightning_reg.atomic import atomic_write

        with open(self.metrics_file_path, newline="") as file:
            rows = list(csv.DictReader(file))
        for row in rows:  # a row longer than the header (a file cut short by an earlier version): extra cells dropped
            row.pop(None, None)
        with atomic_write(self.metrics_file_path, newline="") as file:  # a new column: old rows kept, or nothing
            writer = csv.DictWriter(file, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    @override
    def save(self) -> None:
        """Lightning's save, except that a write cut short (a full disk) is undone: the rows of ``metrics.csv``
        before this save stay, no partial row, and :class:`~lightning_reg.atomic.WriteError` names the file."""
        path = self.metrics_file_path
        if not self.metrics or not _is_local(path):
            super().save()
            return
        from lightning_reg.atomic import WriteError, is_filesystem_error

        before = list(self.metrics_keys)
        try:
            new_keys = self._record_new_keys()
            exists = os.path.isfile(path)
            if new_keys and exists:
                self._rewrite_with_new_header(self.metrics_keys)
            size = os.path.getsize(path) if exists else None
            try:
                with open(path, "a" if exists else "w", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                    if not exists:
                        writer.writeheader()
                    writer.writerows(self.metrics)
            except OSError:
                with contextlib.suppress(OSError):
                    if size is None:
                        os.unlink(path)
                    else:
                        os.truncate(path, size)
                raise
        except OSError as err:
            # The header on disk is still the old one: forget the new keys, so the save Lightning retries at
            # teardown (logger.finalize) rewrites the header first instead of appending rows longer than it.
            self.metrics_keys = before
            if is_filesystem_error(err) and not isinstance(err, WriteError):
                raise WriteError(path, err) from err
            raise
        self.metrics = []


# Why not public: CSVLogger builds its writer in ``experiment`` with no factory to override; this mirrors it
# through the private ``_experiment`` and ``_fs``.
def csv_logger_experiment(logger: Any) -> AppendingCSVExperimentWriter:
    """A Lightning ``CSVLogger``'s experiment writer, built as :class:`AppendingCSVExperimentWriter` on first use.

    Mirrors ``CSVLogger.experiment``, which caches the writer in the private ``_experiment`` and creates the
    root directory through the private ``_fs``.
    """
    if logger._experiment is not None:
        return logger._experiment
    logger._fs.makedirs(logger.root_dir, exist_ok=True)
    logger._experiment = AppendingCSVExperimentWriter(log_dir=logger.log_dir)
    return logger._experiment


# Why not public: the public path, pl_module.log, costs 6.46M instructions for three values per epoch end
# against 83k here (callgrind, measured for issue 26); kept for that.
def store_epoch_end_values(trainer: Any, values: dict[str, float], device: Any) -> bool:
    """Leave ``values`` where ``pl_module.log(name, v, on_step=False, on_epoch=True)`` in an epoch-end hook would.

    For a trainer **without loggers**: there, such a call only puts the value into ``trainer.callback_metrics``
    and ``trainer.logged_metrics`` (Lightning copies its results into both dicts after the epoch-end hooks,
    ``LoggerConnector.on_epoch_end``), as a tensor of the default float dtype (float32 unless float64) on the
    module's device, reduced over a single value: the same number. Going through ``LightningModule.log`` and its
    result collection for that costs about half a millisecond per value. Writes into the dicts behind the two
    properties (``LoggerConnector._callback_metrics`` and ``_logged_metrics``, private); returns False, writing
    nothing, when they are not there (the caller then logs through ``pl_module.log``; the canary test says so).
    """
    connector = getattr(trainer, "_logger_connector", None)
    callback = getattr(connector, "_callback_metrics", None)
    logged = getattr(connector, "_logged_metrics", None)
    if not isinstance(callback, dict) or not isinstance(logged, dict):
        return False
    dtype = torch.get_default_dtype()
    dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32  # Lightning's _get_default_dtype
    for name, value in values.items():
        tensor = torch.tensor(value, device=device, dtype=dtype)
        callback[name] = tensor
        logged[name] = tensor
    return True


# Why not public: ``trainer.callback_metrics[k] = v`` costs 89k instructions per step against 9k here
# (callgrind mid-fit with logged metrics, measured for issue 26); kept for that.
def callback_metrics_store(trainer: Any) -> dict[str, Any]:
    """The dict behind ``trainer.callback_metrics``, for a callback that only *writes* a value into it.

    Lightning's ``callback_metrics`` property re-aggregates every logged result on each read before returning
    this same dict (``LoggerConnector._callback_metrics``, private), which cost ScheduledDropout about half its
    per-step instructions. Writing into the dict directly is what ``trainer.callback_metrics[k] = v`` does, minus
    that re-aggregation; readers still go through the property. Falls back to the property when the private
    attribute is not there (the canary test says so).
    """
    store = getattr(getattr(trainer, "_logger_connector", None), "_callback_metrics", None)
    return store if isinstance(store, dict) else trainer.callback_metrics
