"""What the sweep report (:mod:`lightning_reg.app.report`) and the study report (:mod:`lightning_reg.study.report`)
share: the statistics over seeds and the Markdown pieces. Plain Python, no Lightning, no Optuna.

Example:
    >>> mean, std, n = mean_std([0.8, 0.9, None, float("nan")])
    >>> round(mean, 2), round(std, 4), n
    (0.85, 0.0707, 2)
    >>> print("\\n".join(markdown_table(["config", "test acc"], [["l2", "0.9"]])))
    | config | test acc |
    |---|---|
    | l2 | 0.9 |
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

__all__ = ["markdown_table", "mean_std", "plots_section"]


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1) and count of the finite values; NaN where undefined."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return math.nan, math.nan, 0
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if len(xs) > 1 else math.nan
    return mean, std, len(xs)


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule and one line per row."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def plots_section(plots: Sequence[Path]) -> list[str]:
    """The ``## Plots`` section's lines, one image per PNG (none when there are no plots)."""
    if not plots:
        return []
    return ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
