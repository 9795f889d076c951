"""Confirmed winners: the ``top_k`` best trials re-run with fresh seeds, mean ± std per trial.

Promise kept here: the winner a user reads in the report was not a lucky seed (``hydra.sweeper.confirm``).
Optuna has no such step; it runs after the study, through the same launcher as the trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import optuna
from optuna.trial import TrialState

from lightning_reg.errors import ConfigError
from lightning_reg.study.engine import ATTR
from lightning_reg.study.jobs import JobOutcome, JobSpec, Worker, _as_values, seed_variants, summarize_values

__all__ = ["ConfirmMixin", "SweepFailed"]


class SweepFailed(RuntimeError):
    """The sweep as a whole failed: too many failed trials (``max_failure_rate``), or none completed.

    The sweeper prints it as one line and exits with status 1, as Hydra's Optuna sweeper exits 1.
    """


class ConfirmMixin:
    """:meth:`confirm` (mixed into :class:`StudyWorker`)."""

    def confirm(self, top_k: int, seeds: Sequence[int], extra: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Re-run the ``top_k`` best complete trials with each of ``seeds``; record mean ± std per trial."""
        w = cast(Worker, self)  # a mixin of StudyWorker only
        if top_k <= 0 or not seeds:
            return []
        if w.n_objectives > 1:
            raise ConfigError("`hydra.sweeper.confirm` ranks trials by one objective; this study has several.")
        sign = -1.0 if w.study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        ranked = sorted(
            (sign * t.value, t.number, t)
            for t in w.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None
        )
        best = [t for _, _, t in ranked[:top_k]]
        variants = seed_variants(seeds, w.keys["seed"])
        specs: list[JobSpec] = []
        for t in best:
            specs += w.specs_for(None, t.params, variants, f"confirm/{t.number}", extra=list(extra))
        outcomes: list[JobOutcome] = []
        for i in range(0, len(specs), max(1, w.n_jobs)):
            outcomes += w.launch(specs[i : i + max(1, w.n_jobs)])
        table = []
        for k, t in enumerate(best):
            outs = outcomes[k * len(variants) : (k + 1) * len(variants)]
            values: list[float | None] = []
            for o in outs:
                value = _as_values(o.value, 1)
                values.append(None if value is None else value[0])
            row: dict[str, Any] = {
                "trial": t.number,
                "params": t.params,
                "trial_value": t.value,
                "seeds": list(seeds),
                "values": values,
                "job_dirs": [o.job_dir for o in outs],
                "summary": summarize_values(values),
            }
            table.append(row)
        w.study.set_user_attr(ATTR["confirm"], table)
        failed = [o for o in outcomes if o.failed]
        if failed:
            first = failed[0]
            raise SweepFailed(
                f"{len(failed)} of {len(outcomes)} confirmation job(s) failed; first, in {first.job_dir}: {first.error}"
            )
        return table
