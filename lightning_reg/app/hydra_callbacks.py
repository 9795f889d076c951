"""Hydra callbacks: guard run and sweep directories before Hydra writes into them, and build the sweep
report when a multirun ends (or is interrupted)."""

from __future__ import annotations

import atexit
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from typing_extensions import override

__all__ = ["HYDRA_OPTUNA_TARGET", "ReportCallback", "RunDirCallback", "leftover_sweeper_target", "sweeper_option_typo"]

log = logging.getLogger("lightning_reg.app.report")


def _refuse(err: Exception) -> None:
    print(f"lightning_reg: error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)


HYDRA_OPTUNA_TARGET = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def leftover_sweeper_target(config: DictConfig) -> str | None:
    """The one-line message for a config that chose ``hydra/sweeper=lightning_reg_optuna`` but still sets
    Hydra's Optuna sweeper class as ``hydra.sweeper._target_`` (left from before the move); ``None`` otherwise.

    Example:
        >>> cfg = OmegaConf.create({"hydra": {"sweeper": {"_target_": HYDRA_OPTUNA_TARGET},
        ...                                   "runtime": {"choices": {"hydra/sweeper": "lightning_reg_optuna"}}}})
        >>> print(leftover_sweeper_target(cfg))  # doctest: +ELLIPSIS
        `hydra.sweeper._target_` is ...OptunaSweeper (Hydra's Optuna sweeper) but hydra/sweeper is ...
    """
    target = OmegaConf.select(config, "hydra.sweeper._target_")
    choice = OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}
    if target != HYDRA_OPTUNA_TARGET or choice.get("hydra/sweeper") != "lightning_reg_optuna":
        return None
    return (
        f"`hydra.sweeper._target_` is {target} (Hydra's Optuna sweeper) but hydra/sweeper is "
        "lightning_reg_optuna: remove the `_target_` line under hydra.sweeper from your config "
        "(lightning_reg_optuna sets its own)."
    )


def sweeper_option_typo(overrides: list[str], config_dir: str) -> str | None:
    """The one-line message for a ``hydra.sweeper.<key>=<value>`` override whose key is no option of
    ``hydra/sweeper=lightning_reg_optuna`` (Hydra's own error is six lines: "Could not override ..."); ``None``
    otherwise.

    Only an override naming an unknown key costs anything: the config is then composed to see whether our sweeper
    is the one chosen (another sweeper has other keys), and the message is :func:`~lightning_reg.study.setup.
    check_options`' own, which lists the options.
    """
    import dataclasses

    from lightning_reg.study.options import LightningRegOptunaSweeperConf

    options = {f.name for f in dataclasses.fields(LightningRegOptunaSweeperConf)}
    with_value = {"--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--package", "-p"}
    args, skip = [], False
    for a in overrides:  # the command line's overrides, without Hydra's flags
        if not skip and not a.startswith("-"):
            args.append(a)
        skip = a in with_value
    overrides = args
    unknown = [
        o.split("=", 1)
        for o in overrides
        if o.startswith("hydra.sweeper.") and "=" in o and o.split("=", 1)[0].split(".")[2] not in options
    ]
    if not unknown:
        return None
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            compose("train", overrides=overrides, return_hydra_config=True)
        return None
    except ConfigCompositionException as err:
        if "LightningRegOptunaSweeperConf" not in str(err.__cause__ or err):
            return None  # another sweeper's key, or another mistake: Hydra says it
    except Exception:  # noqa: BLE001 - any other composition problem is Hydra's to report
        return None
    finally:
        GlobalHydra.instance().clear()
    from lightning_reg.errors import ConfigError
    from lightning_reg.study.setup import check_options

    key, value = unknown[0]
    try:
        check_options({key.split(".")[2]: value})
    except ConfigError as err:
        return f"{err} A key of your own needs ++{key}=..."
    return None


class RunDirCallback(Callback):
    """Refuse to write into a finished run, an unfinished run without its own ``ckpt_path``, or another sweep's
    directory, before Hydra writes ``.hydra/*`` or ``multirun.yaml`` there (see :mod:`lightning_reg.app.run_dir`).

    ``conf/train.yaml`` registers it under ``hydra.callbacks.run_dir``. A refusal prints one line and exits
    with status 2.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> run = Path(tempfile.mkdtemp())
        >>> RunDirCallback().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(run)}}}))  # new: passes
        >>> _ = (run / "metrics.json").write_text('{"status": "completed"}')
        >>> RunDirCallback().on_run_start(OmegaConf.create({"hydra": {"run": {"dir": str(run)}}}))  # finished
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """

    @override
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lightning_reg.app.run_dir import check_run_dir
        from lightning_reg.errors import ConfigError

        run_dir = OmegaConf.select(config, "hydra.run.dir")
        if run_dir is None:
            return
        try:
            check_run_dir(Path(str(run_dir)), OmegaConf.select(config, "ckpt_path"))
        except ConfigError as err:
            _refuse(err)

    @override
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from lightning_reg.app.run_dir import check_sweep_dir
        from lightning_reg.errors import ConfigError

        leftover = leftover_sweeper_target(config)
        if leftover:
            _refuse(ConfigError(leftover))
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if sweep_dir is None:
            return
        params = OmegaConf.select(config, "hydra.sweeper.params")
        try:
            check_sweep_dir(
                Path(str(sweep_dir)),
                list(config.hydra.overrides.task),
                OmegaConf.to_container(params, resolve=False) if params is not None else None,
            )
        except ConfigError as err:
            _refuse(err)


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
                  _target_: lightning_reg.app.hydra_callbacks.ReportCallback
                  plots: true

        At the end of a multirun whose one job wrote its ``metrics.json``:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from lightning_reg.metrics_file import write_metrics
        >>> sweep = Path(tempfile.mkdtemp())
        >>> (sweep / "0").mkdir()
        >>> _ = write_metrics(sweep / "0" / "metrics.json", {"status": "completed", "test": {"test/acc": 0.9}})
        >>> ReportCallback(plots=False).on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
        <BLANKLINE>
        lightning_reg report: train, 1 runs, 1 configurations
        ...
        >>> sorted(p.name for p in sweep.iterdir())
        ['0', 'report.csv', 'report.md', 'runs.csv']
    """

    def __init__(self, enabled: bool = True, plots: bool = True, baseline: str | None = None) -> None:
        self.enabled = enabled
        self.plots = plots
        self.baseline = baseline
        self._sweep_dir: Path | None = None
        self._ended = False
        self._interrupted = False
        self._prev_sigint: Any = None

    @override
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(config.hydra.sweep.dir)
        self._ended = False
        # A multirun stopped by Ctrl-C (or aborted by an error) never reaches on_multirun_end: write the report
        # of the runs that finished at exit, marked as interrupted.
        atexit.register(self._report_if_cut_short)
        try:
            self._prev_sigint = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            self._prev_sigint = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._interrupted = True
        prev = self._prev_sigint
        if callable(prev):
            prev(signum, frame)
        else:
            raise KeyboardInterrupt

    def _report_if_cut_short(self) -> None:
        if self._ended or not self.enabled or self._sweep_dir is None or not self._sweep_dir.is_dir():
            return
        why = "interrupted (SIGINT)" if self._interrupted else "ended early (aborted before its last job)"
        self._write(self._sweep_dir, interrupted=why)

    @override
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._ended = True
        if not self.enabled:
            return
        self._write(self._sweep_dir or Path(config.hydra.sweep.dir))

    def _write(self, sweep_dir: Path, interrupted: str | None = None) -> None:
        from lightning_reg.app.report import ReportError, make_report

        try:
            if interrupted:
                print(
                    f"\nlightning_reg: the multirun was {interrupted}; writing the report of the runs that finished",
                    file=sys.stderr,
                    flush=True,
                )
            make_report(sweep_dir, baseline=self.baseline, plots=self.plots, interrupted=interrupted)
        except ReportError as err:
            log.error("no report for %s: %s", sweep_dir, err)
        except Exception:  # noqa: BLE001 - the runs are finished; a report bug must not hide their results
            log.exception(
                "building the report for %s failed; rebuild it with `python -m lightning_reg.report %s`",
                sweep_dir,
                sweep_dir,
            )
