"""Loggers: Lightning's CSV logger, made safe to resume (it appends to ``metrics.csv`` instead of deleting it)."""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from lightning_reg.callbacks.compat import AppendingCSVExperimentWriter


class CSVLogger(_LightningCSVLogger):
    """:class:`lightning.pytorch.loggers.CSVLogger` whose ``metrics.csv`` survives a resume.

    A run resumed from ``checkpoints/last.ckpt`` keeps the rows of the epochs before the resume and appends the
    new ones. Rows logged after the checkpoint and before a kill are kept too, so such an epoch can appear
    twice (the later rows are the ones of the resumed run).

    Example:
        >>> logger = CSVLogger("/tmp/run", name="csv", version="")  # doctest: +SKIP
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingCSVExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = AppendingCSVExperimentWriter(log_dir=self.log_dir)
        return self._experiment
