"""The sweep report, rendering: the Markdown table and ``report.md`` (:func:`format_markdown`), ``report.csv`` and
``runs.csv``, and :func:`write_report`, which writes them with the plots of :mod:`lightning_reg.app.report_plots`.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning_reg.app.report_aggregate import METRICS, ConfigSummary, Report
from lightning_reg.atomic import atomic_write, write_text
from lightning_reg.reporting import markdown_table, plots_section

__all__ = [
    "TABLE_HEADER",
    "format_failures",
    "format_markdown",
    "format_table",
    "table_rows",
    "write_csv",
    "write_report",
    "write_runs_csv",
]


def _fmt(x: float, digits: int = 4, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _pm(c: ConfigSummary, metric: str, digits: int = 4) -> str:
    m, s = c.mean[metric], c.std[metric]
    if not math.isfinite(m):
        return "—"
    return f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(s) else f"{m:.{digits}f}"


def _epoch(c: ConfigSummary, metric: str) -> str:
    m = c.mean[metric]
    if not math.isfinite(m):
        return "—"
    return str(int(m)) if float(m).is_integer() else f"{m:.1f}"


TABLE_HEADER = (
    "#",
    "configuration",
    "runs",
    "test acc",
    "Δ vs baseline",
    "Δ / σ_base",
    "test loss",
    "best val acc",
    "best epoch",
    "last epoch",
    "train−val gap",
    "wall s",
)


def table_rows(report: Report) -> list[list[str]]:
    """The report table as strings, one row per configuration, best mean test accuracy first."""
    rows = []
    for i, c in enumerate(report.configs, 1):
        runs = f"{c.n_ok}/{len(c.runs)}" + (f" ({c.n_failed} failed)" if c.n_failed else "")
        rows.append(
            [
                str(i),
                c.label + (" **(baseline)**" if c.is_baseline else ""),
                runs,
                _pm(c, "test_acc"),
                _fmt(c.delta, sign=True) if report.baseline else "—",
                _fmt(c.delta_in_std, 2, sign=True) if report.baseline else "—",
                _pm(c, "test_loss"),
                _pm(c, "best_val_acc"),
                _epoch(c, "best_epoch"),
                _epoch(c, "last_epoch"),
                _pm(c, "gap", 3),
                _fmt(c.mean["wall_s"], 1),
            ]
        )
    return rows


def format_table(report: Report) -> str:
    """The configuration table in Markdown (also what the end of a multirun prints)."""
    return "\n".join(markdown_table(TABLE_HEADER, table_rows(report)))


def format_failures(report: Report) -> str:
    lines = []
    for r in report.failed:
        err = (r.error or "").strip().splitlines()
        first = err[0] if err else ""
        label = next((c.label for c in report.configs if r in c.runs), "")
        lines.append(f"- `{r.path}` ({label}, seed {r.seed}, status {r.status}): {first}")
    return "\n".join(lines)


def format_markdown(report: Report, plots: Sequence[Path] = ()) -> str:
    """The whole ``report.md``."""
    n_ok = sum(r.ok for r in report.runs)
    parts = [
        f"# Sweep report: {report.experiment}",
        "",
        f"Source: `{report.root}`: {len(report.runs)} runs in {len(report.configs)} configurations "
        f"({n_ok} completed, {len(report.runs) - n_ok} failed); sweeper: {report.sweeper}.",
    ]
    if report.common_overrides:
        parts.append("Common to every configuration: " + ", ".join(f"`{o}`" for o in report.common_overrides) + ".")
    parts += [
        "",
        "Mean ± sample std (n − 1) over the completed runs of each configuration (runs differing only in `seed`). "
        "Best val acc is the highest `val/acc` of an epoch and best epoch where it occurred; last epoch is the "
        "last epoch trained, whatever ended the fit (epochs count from 0); the gap is `train/acc − val/acc` at the last epoch; wall s is "
        "the mean fit time. "
        + (
            f"Δ is the difference in mean test accuracy from the baseline `{report.baseline.label}`, and Δ / σ_base "
            "that difference in units of the baseline's std."
            if report.baseline
            else "No baseline configuration was found (name one with `--baseline`)."
        ),
        "",
        format_table(report),
    ]
    if report.best_trial:
        parts += [
            "",
            f"Optuna best trial ({report.direction or 'maximize'} `{report.optimized_metric}`): "
            f"value {report.best_trial.get('value')}, params `{report.best_trial.get('params')}`.",
        ]
    if report.failed:
        parts += ["", f"## Failed runs ({len(report.failed)})", "", format_failures(report)]
    parts += plots_section(plots)
    return "\n".join(parts) + "\n"


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def write_csv(report: Report, path: Path) -> None:
    """One row per configuration, the numbers unrounded (``report.csv``)."""
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        stat_cols = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        w.writerow(
            [
                "rank",
                "configuration",
                "baseline",
                "runs",
                "failed",
                *stat_cols,
                "delta_test_acc",
                "delta_in_baseline_std",
                "seeds",
                "overrides",
            ]
        )
        for i, c in enumerate(report.configs, 1):
            stats = [_csv_num(getattr(c, s)[m]) for m in METRICS for s in ("mean", "std")]
            w.writerow(
                [
                    i,
                    c.label,
                    int(c.is_baseline),
                    len(c.runs),
                    c.n_failed,
                    *stats,
                    _csv_num(c.delta),
                    _csv_num(c.delta_in_std),
                    " ".join(str(s) for s in c.seeds),
                    " ".join(c.key),
                ]
            )


def write_runs_csv(report: Report, path: Path) -> None:
    """One row per run (``runs.csv``), so every table entry can be traced back."""
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["configuration", "run_dir", "status", "seed", *METRICS, "error"])
        for c in report.configs:
            for r in c.runs:
                err = (r.error or "").strip().splitlines()
                w.writerow(
                    [
                        c.label,
                        str(r.path),
                        r.status,
                        r.seed,
                        *(_csv_num(getattr(r, m)) for m in METRICS),
                        err[0] if err else "",
                    ]
                )


def write_report(report: Report, out_dir: Path | None = None, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``runs.csv`` and (with matplotlib) PNG plots into ``out_dir``."""
    out = Path(out_dir or report.root)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    pngs: list[Path] = []
    if plots:
        from lightning_reg.app import report_plots
        from lightning_reg.plotting import MissingMatplotlib

        try:
            pngs = report_plots.plot_all(report, out)
        except MissingMatplotlib as err:
            print(f"lightning_reg.report: {err}", file=sys.stderr)
    for p in pngs:
        files[p.stem] = p
    files["report.md"] = out / "report.md"
    write_text(files["report.md"], format_markdown(report, pngs))
    files["report.csv"] = out / "report.csv"
    write_csv(report, files["report.csv"])
    files["runs.csv"] = out / "runs.csv"
    write_runs_csv(report, files["runs.csv"])
    return files
