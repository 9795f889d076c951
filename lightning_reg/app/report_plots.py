"""PNG plots for the sweep report (matplotlib is optional: ``pip install "lightning-reg[plots]"``).

* ``loss_curves.png``: train and validation loss per epoch, one panel per configuration, the mean over
  seeds as a line and the min–max over seeds as a band;
* ``test_acc.png``: mean test accuracy per configuration with ± std error bars, baseline highlighted;
* ``optimization_history.png`` (Optuna sweeps): each trial's objective and the best so far.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_reg.plotting import pyplot, save_figure

if TYPE_CHECKING:
    from lightning_reg.app.report_aggregate import ConfigSummary, Report

__all__ = [
    "MAX_PANELS",
    "curve_band",
    "plot_all",
    "plot_loss_curves",
    "plot_optimization_history",
    "plot_test_acc",
    "short_label",
]

#: At most this many configurations get a loss-curve panel (the best ones by test accuracy).
MAX_PANELS = 16


def curve_band(
    histories: Sequence[Sequence[dict[str, float]]], key: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Epochs, and the mean, min and max of ``key`` over runs at each epoch (only runs that logged it).

    Example:
        >>> curve_band([[{"epoch": 0, "l": 1.0}, {"epoch": 1, "l": 0.5}], [{"epoch": 0, "l": 3.0}]], "l")
        ([0.0, 1.0], [2.0, 0.5], [1.0, 0.5], [3.0, 0.5])
    """
    per_epoch: dict[float, list[float]] = {}
    for hist in histories:
        for row in hist:
            v = row.get(key)
            if v is not None and "epoch" in row and math.isfinite(float(v)):
                per_epoch.setdefault(float(row["epoch"]), []).append(float(v))
    epochs = sorted(per_epoch)
    return (
        epochs,
        [sum(per_epoch[e]) / len(per_epoch[e]) for e in epochs],
        [min(per_epoch[e]) for e in epochs],
        [max(per_epoch[e]) for e in epochs],
    )


def short_label(label: str, width: int = 40) -> str:
    """A configuration label for a plot: long floats rounded to 3 significant digits, wrapped at ``width``.

    Example:
        >>> short_label("model.dropout=0.25154158265390486, optimizer.lr=0.0013255385789985395", width=60)
        'model.dropout=0.252, optimizer.lr=0.00133'
    """
    import re
    import textwrap

    rounded = re.sub(r"-?\d+\.\d{4,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.3g}", label)
    return "\n".join(textwrap.wrap(rounded, width)) or rounded


def plot_loss_curves(configs: Sequence[ConfigSummary], path: Path) -> Path | None:
    """Train/val loss per configuration: mean line and min–max band over seeds (the best 16 by test accuracy)."""
    with_history = [c for c in configs if any(r.history for r in c.runs)]
    shown = with_history[:MAX_PANELS]
    if not shown:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, c in zip(axes.flat, shown):
        hists = [r.history for r in c.runs if r.history]
        for key, color in (("train/loss", "tab:blue"), ("val/loss", "tab:orange")):
            epochs, mean, lo, hi = curve_band(hists, key)
            if epochs:
                ax.plot(epochs, mean, color=color, label=key)
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.25, linewidth=0)
        ax.set_title(short_label(c.label + (" (baseline)" if c.is_baseline else "")), fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=8)
    more = (
        f"; the best {len(shown)} of {len(with_history)} configurations by test accuracy"
        if len(with_history) > len(shown)
        else ""
    )
    fig.suptitle(f"loss per epoch: mean over seeds, band = min–max over seeds{more}", fontsize=10)
    return save_figure(fig, path)


def plot_test_acc(configs: Sequence[ConfigSummary], path: Path) -> Path | None:
    """Mean test accuracy per configuration with ± std error bars (best at the top)."""
    shown = [c for c in configs if math.isfinite(c.mean["test_acc"])]
    if not shown:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, max(2.6, 0.45 * len(shown) + 1.4)))
    ys = list(range(len(shown)))[::-1]
    for y, c in zip(ys, shown):
        err = c.std["test_acc"] if math.isfinite(c.std["test_acc"]) else 0.0
        ax.errorbar(
            c.mean["test_acc"], y, xerr=err, fmt="o", capsize=4, color="tab:red" if c.is_baseline else "tab:blue"
        )
        for r in c.runs:
            if r.test_acc is not None:
                ax.plot(r.test_acc, y, "x", color="gray", markersize=4)
    ax.set_yticks(ys)
    ax.set_yticklabels([short_label(c.label + (" (baseline)" if c.is_baseline else ""), 50) for c in shown], fontsize=8)
    ax.set_xlabel("test accuracy (mean ± std over seeds; x = single runs)")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_optimization_history(report: Report, path: Path) -> Path | None:
    """Each Optuna trial's objective in trial order, and the best value so far."""
    trials = sorted((r.job_num, r.objective) for r in report.runs if r.job_num is not None)
    if not trials:
        return None
    plt = pyplot()
    maximize = (report.direction or "maximize") != "minimize"
    xs, ys, best, running = [], [], [], None
    for num, value in trials:
        if value is None or not math.isfinite(value):
            continue
        running = value if running is None else (max(running, value) if maximize else min(running, value))
        xs.append(num)
        ys.append(value)
        best.append(running)
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(xs, ys, "o", label="trial")
    ax.step(xs, best, where="post", color="tab:red", label="best so far")
    failed = [num for num, value in trials if value is None or not math.isfinite(value)]
    for num in failed:
        ax.axvline(num, color="gray", alpha=0.3, linestyle=":")
    ax.set_xlabel("trial")
    ax.set_ylabel(report.optimized_metric or "objective")
    ax.set_title(
        "Optuna optimization history" + (f" ({len(failed)} failed trials dotted)" if failed else ""), fontsize=10
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_all(report: Report, out_dir: Path) -> list[Path]:
    """Write every plot that applies to ``report`` into ``out_dir``; raises :class:`MissingMatplotlib`."""
    pyplot()
    out = Path(out_dir)
    made = [
        plot_loss_curves(report.configs, out / "loss_curves.png"),
        plot_test_acc(report.configs, out / "test_acc.png"),
    ]
    if report.sweeper == "optuna":
        made.append(plot_optimization_history(report, out / "optimization_history.png"))
    return [p for p in made if p is not None]
