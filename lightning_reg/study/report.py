"""The report of an Optuna study, read from its storage: trial states, pruning savings, plots, confirmed winners.

``python -m lightning_reg.report <sweep dir>`` finds the study through the sweep's ``multirun.yaml`` (or the
``optuna.db`` file in it); ``python -m lightning_reg.report --storage URL --study NAME`` reads a study on a
shared database from any machine. A search ranks its trials by the optimized (validation) metric; test
metrics appear only for confirmed winners, whose seeds were not part of the search.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lightning_reg.atomic import atomic_write, write_text
from lightning_reg.metrics_file import FILE_NAME, read_metrics
from lightning_reg.reporting import markdown_table, mean_std, plots_section
from lightning_reg.study.engine import ATTR, mask_url, open_storage

__all__ = [
    "StudyReport",
    "TrialRow",
    "format_study_markdown",
    "load_study_report",
    "sig",
    "study_of_sweep_dir",
    "write_study_report",
    "write_trials_csv",
]


def sig(x: Any, digits: int = 3) -> str:
    """A number rounded to ``digits`` significant digits, for labels and tables.

    Example:
        >>> sig(0.25154158265390486), sig(0.0013255385789985395), sig(128), sig("adam")
        ('0.252', '0.00133', '128', 'adam')
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={sig(v)}" for k, v in params.items())


def study_of_sweep_dir(sweep_dir: Path) -> tuple[str, str] | None:
    """``(storage URL, study name)`` of the lightning_reg Optuna sweep in ``sweep_dir``, or ``None``."""
    import yaml

    from lightning_reg.study.engine import default_storage_url

    multirun = Path(sweep_dir) / "multirun.yaml"
    if multirun.is_file():
        data = yaml.safe_load(multirun.read_text()) or {}
        sweeper = (data.get("hydra") or {}).get("sweeper") or {}
        if "lightning_reg_optuna" not in str(sweeper.get("_target_", "")):
            return None
        url = sweeper.get("storage")
        if isinstance(url, str) and "${" in url:
            url = None  # an interpolation (a password from the environment): fall back to the study file
        name = sweeper.get("study_name") or "study"
        if not url and not (Path(sweep_dir) / "optuna.db").is_file():
            return None
        return (url or default_storage_url(sweep_dir)), name
    if (Path(sweep_dir) / "optuna.db").is_file():
        return default_storage_url(sweep_dir), "study"
    return None


@dataclass
class TrialRow:
    """One trial as the study report shows it: state, objective values, parameters, epochs and job directory.

    Example:
        >>> row = TrialRow(3, "complete", [0.91], {"optimizer.lr": 0.01}, 10, 10, None, "3")
        >>> row.objective()
        0.91
        >>> TrialRow(4, "fail", None, {}, None, None, None, None).objective()
        Traceback (most recent call last):
        ...
        ValueError: trial 4 (fail) has no objective value.
    """

    number: int
    state: str
    values: list[float] | None
    params: dict[str, Any]
    epochs: int | None
    max_epochs: int | None
    pruned_epoch: int | None
    job_dir: str | None

    def objective(self, k: int = 0) -> float:
        """The ``k``-th objective's value, for a row that has values (the tables and plots select those)."""
        if not self.values:
            raise ValueError(f"trial {self.number} ({self.state}) has no objective value.")
        return self.values[k]


@dataclass
class StudyReport:
    """What the study report shows, computed from the storage (no files needed).

    Example:
        >>> rows = [TrialRow(0, "complete", [0.80], {"x": 1}, 5, 5, None, "0"),
        ...         TrialRow(1, "pruned", [0.95], {"x": 2}, 2, 5, 1, "1"),  # its last intermediate value
        ...         TrialRow(2, "complete", [0.85], {"x": 3}, 5, 5, None, "2"),
        ...         TrialRow(3, "fail", None, {"x": 4}, None, 5, None, "3")]
        >>> rep = StudyReport("s", "sqlite:///optuna.db", ["maximize"], "val/acc", rows=rows)
        >>> [r.number for r in rep.ranked]  # completed trials first, best first; failed ones not ranked
        [2, 0, 1]
    """

    study_name: str
    storage: str
    directions: list[str]
    metric: Any
    rows: list[TrialRow] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)
    confirm: list[dict[str, Any]] = field(default_factory=list)
    epochs_spent: int = 0
    epochs_unpruned: int = 0
    log_params: set[str] = field(default_factory=set)
    study: Any = field(default=None, repr=False, compare=False)

    @property
    def ranked(self) -> list[TrialRow]:
        """Finished trials with a value, best first (by the first objective)."""
        sign = -1.0 if self.directions[0] == "maximize" else 1.0
        scored = [r for r in self.rows if r.values and r.state in ("complete", "pruned")]
        return sorted(scored, key=lambda r: (r.state != "complete", sign * r.objective(), r.number))


def load_study_report(storage_url: str, study_name: str) -> StudyReport:
    """Read ``study_name`` from ``storage_url`` and summarize it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(storage_url, heartbeat_interval=None)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ValueError(
            f"no study {study_name!r} in {mask_url(storage_url)}; it holds: {', '.join(names) or 'none'}."
        ) from None
    trials = study.get_trials(deepcopy=False)
    rep = StudyReport(
        study_name,
        mask_url(storage_url),
        [d.name.lower() for d in study.directions],
        study.user_attrs.get(ATTR["optimized_metric"]),
    )
    for t in trials:
        status = t.user_attrs.get(ATTR["status"])
        if status == "surplus":
            continue  # never run: a worker lost the race for the last slot
        state = t.state.name.lower()
        rep.states[state] = rep.states.get(state, 0) + 1
        values = list(t.values) if t.values is not None else None
        if values is None and t.state == TrialState.PRUNED and t.intermediate_values:
            values = [t.intermediate_values[max(t.intermediate_values)]]
        epochs = t.user_attrs.get(ATTR["epochs"])
        if epochs is None:  # a cross-validated trial: the longest fold
            fold_epochs = [v for k, v in t.user_attrs.items() if k.endswith(ATTR["epochs"])]
            epochs = max(fold_epochs) if fold_epochs else None
        max_epochs = t.user_attrs.get(ATTR["max_epochs"])
        rep.rows.append(
            TrialRow(
                t.number,
                state,
                values,
                dict(t.params),
                epochs,
                max_epochs,
                t.user_attrs.get(ATTR["pruned_epoch"]),
                t.user_attrs.get(ATTR["job_dir"]),
            )
        )
    for r in rep.rows:
        if r.epochs is not None and r.state in ("complete", "pruned"):
            rep.epochs_spent += r.epochs
            rep.epochs_unpruned += (r.max_epochs or r.epochs) if r.state == "pruned" else r.epochs
    rep.study = study
    rep.log_params = {k for t in trials for k, d in t.distributions.items() if getattr(d, "log", False)}
    rep.confirm = list(study.user_attrs.get(ATTR["confirm"]) or [])
    for row in rep.confirm:
        tests = []
        for d in row.get("job_dirs") or []:
            path = Path(d or "") / FILE_NAME
            if path.is_file():
                tests.append(read_metrics(path).get("test", {}).get("test/acc"))
        mean, std, n = mean_std(tests)
        # The worker's ``summary`` shape: ``None`` without values, a std of 0 for one seed.
        row["test"] = {"mean": mean if n else None, "std": (std if n > 1 else 0.0) if n else None, "n": n}
    return rep


def format_study_markdown(rep: StudyReport, plots: Sequence[Path] = (), limit: int = 100) -> str:
    """``report.md`` for a study."""
    metric = rep.metric if isinstance(rep.metric, str) else ", ".join(map(str, rep.metric or []))
    states = ", ".join(f"{n} {s}" for s, n in sorted(rep.states.items())) or "no trials"
    lines = [
        f"# Study report: {rep.study_name}",
        "",
        f"Storage `{rep.storage}`; {' / '.join(rep.directions)} `{metric}`. Trials: {states}.",
    ]
    if rep.epochs_unpruned:
        saved = 1 - rep.epochs_spent / rep.epochs_unpruned
        lines.append(
            f"Epochs trained: {rep.epochs_spent}, against {rep.epochs_unpruned} had every pruned trial run "
            f"to its max_epochs ({saved:.0%} saved by pruning)."
        )
    ranked = rep.ranked
    lines += ["", f"## Trials, best first by `{metric}` (validation)", ""]
    head = ["rank", "trial", "state", metric or "value", "epochs", "pruned at", "params"]
    rows = [
        [
            str(i),
            str(r.number),
            r.state,
            " / ".join(f"{v:.4f}" for v in r.values or []),
            str(r.epochs) if r.epochs is not None else "—",
            str(r.pruned_epoch) if r.pruned_epoch is not None else "—",
            _params(r.params),
        ]
        for i, r in enumerate(ranked[:limit], 1)
    ]
    lines += markdown_table(head, rows)
    if len(ranked) > limit:
        lines.append(f"\n({len(ranked) - limit} more trials in trials.csv.)")
    failed = [r for r in rep.rows if r.state == "fail"]
    if failed:
        lines += [
            "",
            f"Failed trials: {', '.join(str(r.number) for r in failed)} (a failed job, or a lost worker "
            "whose trial was retried).",
        ]
    if rep.confirm:
        lines += ["", "## Confirmed winners (fresh seeds; test metrics only here)", ""]
        head = ["trial", "params", f"trial {metric}", f"{metric} over seeds", "test/acc over seeds", "seeds"]
        rows = []
        for row in rep.confirm:
            s, t = row.get("summary") or {}, row.get("test") or {}
            pm = f"{s['mean']:.4f} ± {s['std']:.4f} (n={s['n']})" if s.get("mean") is not None else "—"
            tpm = f"{t['mean']:.4f} ± {t['std']:.4f} (n={t['n']})" if t.get("mean") is not None else "—"
            rows.append(
                [str(row["trial"]), _params(row["params"]), f"{row['trial_value']:.4f}", pm, tpm]
                + [", ".join(map(str, row["seeds"]))]
            )
        lines += markdown_table(head, rows)
    lines += plots_section(plots)
    return "\n".join(lines) + "\n"


def write_trials_csv(rep: StudyReport, path: Path) -> None:
    import csv

    keys = sorted({k for r in rep.rows for k in r.params})
    with atomic_write(path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", "state", "value", "epochs", "max_epochs", "pruned_epoch", *keys, "job_dir"])
        for r in sorted(rep.rows, key=lambda r: r.number):
            w.writerow(
                [
                    r.number,
                    r.state,
                    " ".join(repr(v) for v in r.values or []),
                    r.epochs,
                    r.max_epochs,
                    r.pruned_epoch,
                    *(r.params.get(k, "") for k in keys),
                    r.job_dir or "",
                ]
            )


def write_study_report(rep: StudyReport, out_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write ``report.md``, ``trials.csv`` and the study plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    if plots:
        from lightning_reg.plotting import MissingMatplotlib
        from lightning_reg.study import plots as study_plots

        try:
            pngs = study_plots.plot_study(rep, out, study=rep.study)
        except MissingMatplotlib as err:
            print(f"lightning_reg.report: {err}")
    files = {p.stem: p for p in pngs}
    files["report.md"] = out / "report.md"
    write_text(files["report.md"], format_study_markdown(rep, pngs))
    files["trials.csv"] = out / "trials.csv"
    write_trials_csv(rep, files["trials.csv"])
    return files
