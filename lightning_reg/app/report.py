"""The sweep report: read every run of a multirun, group runs by configuration (ignoring the seed), compare.

``python -m lightning_reg.report <multirun dir>`` rebuilds it; the Hydra callback
:class:`~lightning_reg.app.hydra_callbacks.ReportCallback` builds it at the end of every multirun. The
functions here only read files and compute: :func:`load_runs` reads each run's ``metrics.json`` (and its
CSV log when the JSON has no history), :func:`aggregate` groups and summarizes, :func:`format_markdown`
and :func:`write_report` write ``report.md``, ``report.csv`` and ``runs.csv``. Plots live in
:mod:`lightning_reg.app.report_plots`.

A run's configuration is its Hydra override list minus ``seed``, ``paths.*`` and ``hydra.*``: the runs that
differ only in their seed form one row, and the row shows mean ± sample std (n - 1) over them.

The work is split by step: :mod:`~lightning_reg.app.report_read` (runs), :mod:`~lightning_reg.app.report_aggregate`
(configurations and statistics), :mod:`~lightning_reg.app.report_render` (the files); this module runs them and
keeps their names importable from ``lightning_reg.app.report``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_reg.app.report_aggregate import (
    METRICS,
    ConfigSummary,
    Report,
    aggregate,
    build,
    pretty_override,
)
from lightning_reg.app.report_read import (
    IGNORED_KEYS,
    IGNORED_PREFIXES,
    ReportError,
    RunRecord,
    config_key,
    find_run_dirs,
    load_run,
    load_runs,
    read_csv_history,
    summarize_metrics,
)
from lightning_reg.app.report_render import (
    format_failures,
    format_markdown,
    format_table,
    table_rows,
    write_csv,
    write_report,
    write_runs_csv,
)
from lightning_reg.atomic import write_text
from lightning_reg.reporting import mean_std

__all__ = [
    "IGNORED_KEYS",
    "IGNORED_PREFIXES",
    "METRICS",
    "ConfigSummary",
    "Report",
    "ReportError",
    "RunRecord",
    "aggregate",
    "build",
    "config_key",
    "find_run_dirs",
    "format_failures",
    "format_markdown",
    "format_table",
    "load_run",
    "load_runs",
    "main",
    "make_report",
    "make_study_report",
    "mean_std",
    "pretty_override",
    "read_csv_history",
    "summarize_metrics",
    "table_rows",
    "write_csv",
    "write_report",
    "write_runs_csv",
]


def make_report(
    root: Path,
    out_dir: Path | None = None,
    baseline: str | None = None,
    plots: bool = True,
    echo: bool = True,
    interrupted: str | None = None,
) -> Report:
    """Build the report for the multirun at ``root``, write its files and (``echo``) print the table.

    ``interrupted``: the multirun did not run to its end; ``report.md`` says so (with this reason) at the top.

    Example:
        >>> make_report("outputs/regularizers_digits/multiruns/2025-01-01_00-00-00")  # doctest: +SKIP
    """
    found = _study_in(Path(root))
    if found is not None:
        return make_study_report(*found, out_dir=Path(out_dir or root), plots=plots, echo=echo)
    report = build(Path(root), baseline=baseline)
    files = write_report(report, out_dir, plots=plots)
    if interrupted:
        note = (
            f"**This multirun was {interrupted}.** The report covers the runs that finished; jobs that "
            "did not finish are listed as failed (no metrics.json), and jobs never started are missing."
        )
        md = files["report.md"]
        title, _, rest = md.read_text().partition("\n")
        write_text(md, f"{title}\n\n{note}\n{rest}")
        if echo:
            print(f"\nlightning_reg report: {note}", flush=True)
    if echo:
        n_failed = len(report.failed)
        print(
            f"\nlightning_reg report: {report.experiment}, {len(report.runs)} runs, "
            f"{len(report.configs)} configurations" + (f", {n_failed} FAILED" if n_failed else ""),
            flush=True,
        )
        print(format_table(report), flush=True)
        if n_failed:
            print("\nFailed runs:\n" + format_failures(report), flush=True)
        print("\n" + "written: " + ", ".join(str(p) for p in files.values()), flush=True)
    return report


def _study_in(root: Path) -> tuple[str, str] | None:
    """The Optuna study of a lightning_reg sweep directory, when it is one (needs optuna)."""
    if not (root / "optuna.db").is_file() and "lightning_reg_optuna" not in (
        (root / "multirun.yaml").read_text() if (root / "multirun.yaml").is_file() else ""
    ):
        return None
    from lightning_reg.study.report import study_of_sweep_dir

    return study_of_sweep_dir(root)


def make_study_report(storage: str, study: str, out_dir: Path, plots: bool = True, echo: bool = True) -> Any:
    """Write the report of an Optuna study (from any storage) into ``out_dir`` and print its trial table."""
    from lightning_reg.study.report import format_study_markdown, load_study_report, write_study_report

    try:
        rep = load_study_report(storage, study)
    except ValueError as err:
        raise ReportError(str(err)) from None
    files = write_study_report(rep, out_dir, plots=plots)
    if echo:
        print("\n" + format_study_markdown(rep).split("\n## Plots")[0].strip(), flush=True)
        print("\nwritten: " + ", ".join(str(p) for p in files.values()), flush=True)
    return rep


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lightning_reg.report <multirun dir> [--out DIR] [--baseline LABEL] [--no-plots]``."""
    parser = argparse.ArgumentParser(
        prog="python -m lightning_reg.report",
        description="Rebuild the comparison report (report.md, report.csv, runs.csv, plots) of a Hydra multirun.",
    )
    parser.add_argument(
        "multirun_dir",
        type=Path,
        nargs="?",
        default=None,
        help="directory a multirun wrote (holds one folder per job); an Optuna sweep's study is found through it",
    )
    parser.add_argument(
        "--storage", default=None, help="an Optuna study's storage URL (with --study), from any machine"
    )
    parser.add_argument("--study", default=None, help="the study's name in --storage")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: multirun_dir)")
    parser.add_argument("--baseline", default=None, help="label or override of the baseline configuration")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    if (args.storage is None) != (args.study is None):
        parser.error("--storage and --study go together")
    if args.storage is None and args.multirun_dir is None:
        parser.error("give a multirun directory, or --storage URL --study NAME")
    try:
        if args.storage is not None:
            make_study_report(
                args.storage, args.study, out_dir=args.out or args.multirun_dir or Path("."), plots=not args.no_plots
            )
        else:
            make_report(args.multirun_dir, out_dir=args.out, baseline=args.baseline, plots=not args.no_plots)
    except (ReportError, ValueError) as err:
        print(f"lightning_reg.report: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
