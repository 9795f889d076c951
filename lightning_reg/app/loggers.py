"""Loggers: Lightning's CSV logger, made safe to resume (it appends to ``metrics.csv`` instead of deleting it)."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from typing_extensions import override

from lightning_reg._lightning_internals import AppendingCSVExperimentWriter, csv_logger_experiment


class CSVLogger(_LightningCSVLogger):
    """:class:`lightning.pytorch.loggers.CSVLogger` whose ``metrics.csv`` survives a resume.

    A run resumed from ``checkpoints/last.ckpt`` keeps the rows of the epochs before the resume and appends the
    new ones. Rows logged after the checkpoint and before a kill are kept too, so such an epoch can appear
    twice (the later rows are the ones of the resumed run).

    Example:
        >>> logger = CSVLogger("/tmp/run", name="csv", version="")  # doctest: +SKIP
    """

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> AppendingCSVExperimentWriter:
        return csv_logger_experiment(self)


__all__ = ["CSVLogger"]
