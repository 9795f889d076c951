"""Matplotlib, optional (``pip install "lightning-reg[plots]"``): the import with a clear error, and figure saving.

Shared by the sweep report's plots (:mod:`lightning_reg.app.report_plots`) and the study's
(:mod:`lightning_reg.study.plots`).

Example:
    >>> try:
    ...     plt = pyplot()
    ... except MissingMatplotlib:
    ...     plt = None
    >>> plt is None or hasattr(plt, "subplots")
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_reg.atomic import atomic_write

__all__ = ["MissingMatplotlib", "pyplot", "save_figure"]


class MissingMatplotlib(ImportError):
    """matplotlib is not installed; the report is still written, without plots.

    Example:
        >>> import sys
        >>> from unittest import mock
        >>> with mock.patch.dict(sys.modules, {"matplotlib": None}):  # as if matplotlib were not installed
        ...     try:
        ...         pyplot()
        ...     except MissingMatplotlib as err:
        ...         print(isinstance(err, ImportError), str(err).startswith("matplotlib is not installed"))
        True True
    """


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; :class:`MissingMatplotlib` when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingMatplotlib(
            f"matplotlib is not installed ({err}); the report is written without plots. "
            'Install it with `pip install "lightning-reg[plots]"` (or `pip install matplotlib`).'
        ) from None
    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a figure; return its path."""
    plt = pyplot()
    fig.tight_layout()
    try:
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
