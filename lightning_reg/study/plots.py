"""PNG plots of a study, readable for 20–100 trials (matplotlib: ``pip install "lightning-reg[plots]"``).

* ``optimization_history.png``: each finished trial's value in trial order (pruned trials hollow, at their
  last reported value) and the best so far; integer trial ticks;
* ``params.png``: one scatter per parameter against the objective (log axis for log-scale parameters);
* ``param_importances.png``: Optuna's fANOVA importances, when at least two trials completed;
* ``pareto_front.png``: for two-objective studies, every trial and the non-dominated ones.

The last two are Optuna's own plots (``optuna.visualization.matplotlib``). The first two are drawn here because
each keeps a promise Optuna's do not: the history shows the *pruned* trials where they stopped (Optuna's history
shows complete trials only), so a reader sees what pruning cut; the parameter plot labels values at three
significant digits and puts categorical and integer parameters on their own values, readable at 20–100 trials.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lightning_reg.plotting import pyplot, save_figure

__all__ = ["plot_history", "plot_importances", "plot_params", "plot_pareto", "plot_study"]


class _Trial(Protocol):
    """What the plots read of a trial: :class:`lightning_reg.study.report.TrialRow` (not imported here, so that the
    report can import the plots without a circle)."""

    @property
    def number(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def values(self) -> list[float] | None: ...
    @property
    def params(self) -> dict[str, Any]: ...
    def objective(self, k: int = 0) -> float: ...


class _Study(Protocol):
    """What the plots read of a study: :class:`lightning_reg.study.report.StudyReport`."""

    @property
    def study_name(self) -> str: ...
    @property
    def directions(self) -> list[str]: ...
    @property
    def metric(self) -> Any: ...
    @property
    def rows(self) -> Sequence[_Trial]: ...
    @property
    def log_params(self) -> set[str]: ...


def _int_ticks(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_history(rep: _Study, path: Path) -> Path | None:
    rows = sorted((r for r in rep.rows if r.values and r.state in ("complete", "pruned")), key=lambda r: r.number)
    if not rows:
        return None
    plt = pyplot()
    maximize = rep.directions[0] == "maximize"
    fig, ax = plt.subplots(figsize=(8, 3.8))
    done = [r for r in rows if r.state == "complete"]
    pruned = [r for r in rows if r.state == "pruned"]
    ax.plot(
        [r.number for r in done], [r.objective() for r in done], "o", color="tab:blue", label=f"complete ({len(done)})"
    )
    if pruned:
        ax.plot(
            [r.number for r in pruned],
            [r.objective() for r in pruned],
            "o",
            mfc="none",
            color="tab:gray",
            label=f"pruned ({len(pruned)}), last reported value",
        )
    best, xs, running = [], [], None
    for r in done:
        v = r.objective()
        running = v if running is None else (max(running, v) if maximize else min(running, v))
        xs.append(r.number)
        best.append(running)
    if xs:
        ax.step(xs, best, where="post", color="tab:red", label="best so far")
    _int_ticks(ax)
    ax.set_xlabel("trial")
    metric = rep.metric if isinstance(rep.metric, str) else (rep.metric or ["objective"])[0]
    ax.set_ylabel(str(metric))
    ax.set_title(f"{rep.study_name}: optimization history ({len(rows)} trials)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_params(rep: _Study, path: Path) -> Path | None:
    rows = [r for r in rep.rows if r.values and r.state in ("complete", "pruned")]
    keys = sorted({k for r in rows for k in r.params})
    if not rows or not keys:
        return None
    plt = pyplot()
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False)
    metric = rep.metric if isinstance(rep.metric, str) else (rep.metric or ["objective"])[0]
    for ax, key in zip(axes.flat, keys):
        for state, style in (("complete", {"color": "tab:blue"}), ("pruned", {"color": "tab:gray", "mfc": "none"})):
            pts = [(r.params[key], r.objective()) for r in rows if r.state == state and key in r.params]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            if all(isinstance(x, str) for x in xs):
                cats = sorted(set(xs))
                xs = [cats.index(x) for x in xs]
                ax.set_xticks(range(len(cats)), cats, rotation=30, fontsize=8)
            ax.plot(xs, [p[1] for p in pts], "o", alpha=0.8, label=state, **style)
        numeric = [r.params[key] for r in rows if isinstance(r.params.get(key), (int, float))]
        if key in rep.log_params or (numeric and min(numeric) > 0 and max(numeric) / min(numeric) >= 50):
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(str(metric), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"{rep.study_name}: parameters against {metric} ({len(rows)} trials)", fontsize=10)
    return save_figure(fig, path)


def _optuna_figure(draw: Any, path: Path) -> Path | None:
    """Save the figure of one of Optuna's matplotlib plots (``optuna.visualization.matplotlib``)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            ax = draw()
        except (RuntimeError, ValueError):  # too few trials for the plot
            return None
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(7, 4.2)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_importances(rep: _Study, study: Any, path: Path) -> Path | None:
    """Optuna's own fANOVA importance plot, when at least two trials completed."""
    from optuna.visualization.matplotlib import plot_param_importances

    if len([r for r in rep.rows if r.state == "complete"]) < 2 or len(rep.directions) > 1:
        return None
    return _optuna_figure(lambda: plot_param_importances(study), path)


def plot_pareto(rep: _Study, study: Any, path: Path) -> Path | None:
    """Optuna's own Pareto-front plot, for a two-objective study."""
    from optuna.visualization.matplotlib import plot_pareto_front

    if len(rep.directions) != 2 or not any(r.state == "complete" for r in rep.rows):
        return None
    names = rep.metric if isinstance(rep.metric, list) and len(rep.metric) == 2 else None
    return _optuna_figure(lambda: plot_pareto_front(study, target_names=names), path)


def plot_study(rep: _Study, out_dir: Path, study: Any = None) -> list[Path]:
    """Every plot that applies to the study; raises :class:`~lightning_reg.plotting.MissingMatplotlib`."""
    pyplot()
    out = Path(out_dir)
    made = [plot_history(rep, out / "optimization_history.png"), plot_params(rep, out / "params.png")]
    if study is not None:
        made.append(plot_pareto(rep, study, out / "pareto_front.png"))
        made.append(plot_importances(rep, study, out / "param_importances.png"))
    return [p for p in made if p is not None]
