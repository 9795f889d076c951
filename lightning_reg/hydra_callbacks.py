"""Hydra callbacks: build the sweep report when a multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("lightning_reg.report")


class ReportCallback(Callback):
    """At the end of a multirun, write ``report.md``, ``report.csv``, ``runs.csv`` and plots into the sweep
    directory and print the comparison table.

    ``conf/train.yaml`` registers it under ``hydra.callbacks.report``; turn it off with
    ``~hydra.callbacks.report``. Rebuild the same report later with ``python -m lightning_reg.report <dir>``.
    A report that cannot be built (say, every job was killed) is logged, never raised: the runs are done.

    Args:
        enabled: build the report at all.
        plots: also write the PNG plots (needs matplotlib).
        baseline: label or override of the baseline configuration; ``None`` finds ``…=baseline``.

    Example:
        .. code-block:: yaml

            hydra:
              callbacks:
                report:
                  _target_: lightning_reg.hydra_callbacks.ReportCallback
                  plots: true
    """

    def __init__(self, enabled: bool = True, plots: bool = True, baseline: str | None = None) -> None:
        self.enabled = enabled
        self.plots = plots
        self.baseline = baseline
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from lightning_reg.report import ReportError, make_report

        sweep_dir = self._sweep_dir or Path(config.hydra.sweep.dir)
        try:
            make_report(sweep_dir, baseline=self.baseline, plots=self.plots)
        except ReportError as err:
            log.error("no report for %s: %s", sweep_dir, err)
        except Exception:  # noqa: BLE001 - the runs are finished; a report bug must not hide their results
            log.exception("building the report for %s failed; rebuild it with `python -m lightning_reg.report %s`",
                          sweep_dir, sweep_dir)
