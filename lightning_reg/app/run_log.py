"""The entry point's console and run log: other packages' noise filtered out by name, and ``train.log``.

``python -m lightning_reg.train`` selects ``hydra/job_logging=lightning_reg``
(``conf/hydra/job_logging/lightning_reg.yaml``). The console shows what it showed before: Lightning's lines
(including our callbacks' fit-start summaries) as plain text on stderr, our ``lightning_reg.*`` loggers with
Hydra's ``[time][logger][level]`` prefix on stdout, and the lines the entry point prints (:func:`say`). The run
directory's ``train.log`` gets all of them, each with its time, logger and level. ``hydra/job_logging=default``
brings back Hydra's own configuration.

:func:`quiet_third_party` removes three messages that are not ours, each by a targeted filter:

- Lightning's "💡 Tip: ... litlogger" advertisement, printed at every ``Trainer`` construction
  (:class:`LitLoggerTipFilter` on Lightning's rank-zero loggers: that message only);
- torch's ``FutureWarning`` that ``isinstance(treespec, LeafSpec)`` is deprecated, raised by Lightning's own
  pytree helper on every fit (a warnings filter with that message, category and module);
- Alembic's INFO lines "setup plugin alembic.autogenerate..." when Optuna opens a database and Alembic was
  imported before Optuna lowered its verbosity (the ``alembic.runtime.plugins`` logger at WARNING, unless a
  level was set for it).

Nothing else is filtered: other warnings and Lightning's other messages are shown as before.
"""

from __future__ import annotations

import logging
import sys
import warnings

from typing_extensions import override

from lightning_reg._lightning_internals import PYTREE_MODULE, rank_zero_loggers

__all__ = ["RUN_LOG_NAME", "LitLoggerTipFilter", "quiet_third_party", "say"]

#: The logger :func:`say` records its lines on. The job-logging config sends it to ``train.log`` only (the
#: line is printed already); without that config it has a ``NullHandler`` and does not propagate.
RUN_LOG_NAME = "lightning_reg.console"

_run_log = logging.getLogger(RUN_LOG_NAME)
_run_log.addHandler(logging.NullHandler())
_run_log.propagate = False


class LitLoggerTipFilter(logging.Filter):
    """Drops Lightning's "💡 Tip: ... litlogger ..." advertisement and passes every other record.

    Lightning >= 2.6 logs it through ``rank_zero_info`` whenever a ``Trainer`` has no ``LitLogger``.

    Example:
        >>> import logging
        >>> tip = "💡 Tip: For seamless cloud logging, try installing [litlogger](https://pypi.org/project/litlogger/)"
        >>> def record(msg):
        ...     return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, "", 0, msg, None, None)
        >>> f = LitLoggerTipFilter()
        >>> f.filter(record(tip)), f.filter(record("GPU available: False, used: False"))
        (False, True)
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip:") and "litlogger" in message)


_TIP_FILTER = LitLoggerTipFilter()


def quiet_third_party() -> None:
    """Install the three targeted filters described in this module's docstring; calling it again is harmless.

    Example:
        >>> import warnings
        >>> quiet_third_party()
        >>> quiet_third_party()
        >>> sum("LeafSpec" in str(f[1].pattern) for f in warnings.filters if f[1] is not None)
        1
    """
    for logger in rank_zero_loggers():
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)
    # Replaces an identical filter instead of adding a second one.
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=PYTREE_MODULE.replace(".", r"\."),
    )
    alembic = logging.getLogger("alembic.runtime.plugins")
    if alembic.level == logging.NOTSET:
        alembic.setLevel(logging.WARNING)


def say(text: str, *, error: bool = False) -> None:
    """Print one of the entry point's own lines (stdout, or stderr for an error) and record it in the run log.

    Under ``hydra/job_logging=lightning_reg`` each non-blank line becomes one record in the run directory's
    ``train.log``; otherwise the records go nowhere, and the text is only printed.

    Example:
        >>> say("lightning_reg: metrics.json written to /tmp/run/metrics.json")
        lightning_reg: metrics.json written to /tmp/run/metrics.json
    """
    print(text, file=sys.stderr if error else sys.stdout, flush=True)
    for line in text.splitlines():
        if line.strip():
            _run_log.log(logging.ERROR if error else logging.INFO, "%s", line)
