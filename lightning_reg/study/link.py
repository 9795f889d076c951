"""The job's side of a trial: the link from a training job to its Optuna trial, and pruning inside training.

The sweeper starts every job with ``LIGHTNING_REG_TRIAL`` in its environment (through ``hydra.job.env_set``,
so it reaches jobs in other processes and on other machines, and the DDP ranks they start). The job opens
the same storage, reports its monitored metric after each validation, and stops when the pruner says so.
Under DDP, global rank 0 talks to the storage and broadcasts the decision, so every rank stops at the same
step. A trial evaluated over k folds runs k jobs; each records its own curve and the pruner judges the
folds' running mean.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from typing_extensions import override

from lightning_reg.errors import ConfigError
from lightning_reg.study._env import TRIAL_ENV
from lightning_reg.study.engine import ATTR, build_pruner, default_storage_url, open_storage, storage_of
from lightning_reg.study.retry import DEFAULT_BUDGET, RetryingStorage, StorageOutage

__all__ = ["ENV", "TrialLink", "TrialPruning", "fold_means", "shared_storages", "trial_link_from_env"]

log = logging.getLogger("lightning_reg.study")

ENV = TRIAL_ENV


@dataclass(frozen=True)
class TrialLink:
    """What a job needs to find its trial: the study, the trial, its role and fold, and what to report.

    ``storage`` is ``None`` when the job should read the sweeper's ``storage`` from its own Hydra config
    (a URL with a password never travels through the environment). ``role`` is ``leader`` for the job that
    owns the trial and ``follower`` for the ranks of other nodes, which train the same trial but never
    write to the study.

    Example:
        >>> link = TrialLink(study="s", trial_id=3, number=2, monitor="val/acc", direction="maximize")
        >>> TrialLink.from_json(link.to_json()) == link
        True
    """

    study: str
    trial_id: int
    number: int
    monitor: str | None
    direction: str
    prune: bool = False
    storage: str | None = None
    role: str = "leader"
    fold: int | None = None
    num_folds: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrialLink:
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"`{ENV}` must be the JSON the lightning_reg sweeper writes; got {text[:200]!r} ({err})."
            ) from None


def trial_link_from_env(environ: Mapping[str, str] | None = None) -> TrialLink | None:
    """The job's trial link, or ``None`` outside a lightning_reg Optuna sweep."""
    text = (os.environ if environ is None else environ).get(ENV)
    return TrialLink.from_json(text) if text else None


def fold_means(curves: Mapping[int, list[float]], upto: int | None = None) -> dict[int, float]:
    """Per-epoch mean over the folds that have reached each epoch (the running mean pruning judges).

    Example:
        >>> fold_means({0: [0.5, 0.6, 0.7], 1: [0.7, 0.8]})
        {0: 0.6, 1: 0.7, 2: 0.7}
    """
    longest = max((len(c) for c in curves.values()), default=0)
    stop = longest if upto is None else min(longest, upto + 1)
    out: dict[int, float] = {}
    for epoch in range(stop):
        vals = [c[epoch] for c in curves.values() if len(c) > epoch and c[epoch] is not None]
        if vals:
            out[epoch] = round(sum(vals) / len(vals), 12)
    return out


def _hydra_sweeper_node() -> tuple[Any, str | None]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    return hc.sweeper, str(hc.sweep.dir)


def _resolve_storage(link: TrialLink) -> tuple[str, Any, float]:
    node, sweep_dir = _hydra_sweeper_node()
    url = link.storage or (node.get("storage") if node is not None else None)
    if not url:
        if sweep_dir is None:
            raise ConfigError(f"`{ENV}` names no storage and the job runs outside Hydra; cannot find the study.")
        url = default_storage_url(sweep_dir)
    budget = node.get("storage_retry") if node is not None else None
    budget = DEFAULT_BUDGET if not isinstance(budget, (int, float)) or isinstance(budget, bool) else float(budget)
    return url, (node.get("pruner") if node is not None else None), budget


#: While a sweep runs its jobs in its own process (Hydra's basic launcher), the storages its jobs opened, by URL and
#: retry budget: the jobs share one engine and Optuna's cache of finished trials instead of opening the database
#: again per job (about 30 ms a job on SQLite). ``None`` elsewhere: a job in its own process opens its own.
_STORAGES: dict[tuple[str, float], Any] | None = None


@contextlib.contextmanager
def shared_storages() -> Iterator[None]:
    """Let the jobs run in this process until the block ends share their study storage (the sweeper's ``sweep``)."""
    global _STORAGES
    outer, _STORAGES = _STORAGES, {}
    try:
        yield
    finally:
        _STORAGES = outer


def _link_storage(url: str, budget: float) -> Any:
    if _STORAGES is not None and (url, budget) in _STORAGES:
        return _STORAGES[(url, budget)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = open_storage(url, heartbeat_interval=None, retry=budget, wait_to_open=True)
    if _STORAGES is not None:
        _STORAGES[(url, budget)] = storage
    return storage


class TrialPruning(Callback):
    """Report the monitored metric to the job's Optuna trial after each validation; stop when pruned.

    The lightning_reg sweeper adds it to every trial's Trainer (``lightning_reg.app.train`` does that when it
    finds the trial link), so a user's job needs no code for pruning. It works in a job that runs in
    another process or on another machine than the sweeper: it opens the study's storage itself.

    What it writes to the study is what the pruner reads (the reports, a fold's curve); the job's outcome
    travels one way only, in the job's return to whoever launched it (Hydra's ``JobReturn``): a pruned fit
    ends in ``optuna.TrialPruned``, raised from ``on_fit_end`` on every rank, as any Optuna objective
    says "pruned" (``raise_pruned``; lightning_reg's entry point sets it ``False``, writes the run's
    ``metrics.json`` and raises it after that).

    Args:
        link: the job's :class:`TrialLink`.
        pruner: the sweeper's pruner (by default rebuilt from the job's ``hydra.sweeper.pruner``).
        storage_url: the study's storage URL (by default from the job's Hydra config).

    Example:
        >>> import optuna, tempfile
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> from lightning_reg.study.engine import default_storage_url, trial_id_of
        >>> url = default_storage_url(tempfile.mkdtemp())
        >>> study = optuna.create_study(study_name="s", storage=url, direction="maximize")
        >>> trial = study.ask()
        >>> link = TrialLink(study="s", trial_id=trial_id_of(trial), number=trial.number, monitor="val/acc",
        ...                  direction="maximize", prune=True, storage=url)
        >>> cb = TrialPruning(link, pruner=optuna.pruners.MedianPruner())
        >>> cb.pruned_epoch is None, cb.raise_pruned
        (True, True)
    """

    def __init__(
        self, link: TrialLink, pruner: optuna.pruners.BasePruner | None = None, storage_url: str | None = None
    ) -> None:
        if not link.monitor:
            raise ConfigError(
                "`optimized_metric` must name the validation metric the trial reports (e.g. val/acc) when the "
                f"sweeper prunes; got {link.monitor!r}."
            )
        self.link = link
        self._pruner = pruner
        self._storage_url = storage_url
        self._study: optuna.Study | None = None
        self._trial: optuna.trial.Trial | None = None
        self.pruned_epoch: int | None = None
        self.reported: dict[int, float] = {}
        self._pending: dict[int, float] = {}  # reports the storage did not take yet (an outage)
        #: Raise ``optuna.TrialPruned`` at the end of a pruned fit (the job's return says "pruned").
        self.raise_pruned = True

    @property
    @override
    def state_key(self) -> str:
        # Lightning reads it for every hook of every callback (its profiler's name): kept per link (frozen).
        kept = self.__dict__.get("_lr_state_key")
        if kept is None or kept[0] is not self.link:
            key = self._generate_state_key(trial=self.link.number, fold=self.link.fold)
            kept = self.__dict__["_lr_state_key"] = (self.link, key)
        return kept[1]

    # -- storage side (global rank 0 of the leader only) -------------------------------------------
    def _open(self) -> None:
        if self._storage_url is None:
            url, pruner_node, budget = _resolve_storage(self.link)
        else:
            url, pruner_node, budget = self._storage_url, None, DEFAULT_BUDGET
        pruner = self._pruner if self._pruner is not None else build_pruner(pruner_node)
        storage = _link_storage(url, budget)
        self._study = optuna.load_study(study_name=self.link.study, storage=storage, pruner=pruner)
        self._trial = optuna.trial.Trial(self._study, self.link.trial_id)

    def _talks_to_storage(self, trainer: pl.Trainer) -> bool:
        return trainer.is_global_zero and self.link.role == "leader"

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._talks_to_storage(trainer) and self._study is None:
            self._open()
            assert self._trial is not None
            self._trial.set_user_attr(ATTR["max_epochs"], trainer.max_epochs)

    def _decide(self, epoch: int, value: float) -> bool:
        """Report ``value`` for ``epoch`` and ask the pruner. During a database outage the report waits (with
        the earlier ones that waited) and training goes on unpruned; the next epoch or the fit's end sends them."""
        self.reported[epoch] = value
        self._pending[epoch] = value
        storage = storage_of(self._study) if self._study is not None else None
        wait = storage.no_wait() if isinstance(storage, RetryingStorage) else contextlib.nullcontext()
        try:
            with wait:
                waited = len(self._pending) - 1
                self._flush()
                if waited:
                    log.warning("trial %d: %d pruning report(s) that waited are sent", self.link.number, waited + 1)
                return self._judge(epoch, value)
        except StorageOutage as err:
            if len(self._pending) == 1:  # one line per outage, not per epoch
                log.warning(
                    "trial %d: pruning reports wait from epoch %d on, training goes on: %s",
                    self.link.number,
                    epoch,
                    err,
                )
            return False

    def _flush(self) -> None:
        """Send the reports that waited (one curve attribute for a fold's job)."""
        assert self._trial is not None
        if self.link.num_folds is None:
            for e in sorted(self._pending):
                self._trial.report(self._pending[e], e)
                del self._pending[e]
        elif self._pending:
            key = f"{ATTR['fold_values']}{self.link.fold}"
            last = max(self.reported)
            self._trial.set_user_attr(key, [self.reported.get(e) for e in range(last + 1)])
            self._pending.clear()

    def _judge(self, epoch: int, value: float) -> bool:
        assert self._trial is not None and self._study is not None
        if self.link.num_folds is None:
            return self.link.prune and self._trial.should_prune()
        attrs = self._trial.user_attrs
        if attrs.get(ATTR["stop"]):
            return True
        if not self.link.prune:
            return False
        curves = {int(k[len(ATTR["fold_values"]) :]): v for k, v in attrs.items() if k.startswith(ATTR["fold_values"])}
        frozen = copy.copy(storage_of(self._study).get_trial(self.link.trial_id))
        frozen.intermediate_values = fold_means(curves, upto=epoch)
        if self._study.pruner.prune(self._study, frozen):
            self._trial.set_user_attr(ATTR["stop"], f"fold {self.link.fold} pruned at epoch {epoch}")
            return True
        return False

    # -- every rank --------------------------------------------------------------------------------
    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # trainer.validate() in a job reports nothing
        monitor = self.link.monitor
        metrics = trainer.callback_metrics
        if monitor not in metrics:
            logged = ", ".join(sorted(k for k in metrics if not k.startswith("test/"))) or "(none)"
            raise ConfigError(
                f"`optimized_metric` {monitor!r} is not among the metrics this job logs in validation, so the "
                f"trial has nothing to report to its pruner. Logged: {logged}."
            )
        if trainer.sanity_checking:
            return
        prune = False
        if self._talks_to_storage(trainer):
            value = float(metrics[monitor])
            if not math.isfinite(value):
                value = -math.inf if self.link.direction == "maximize" else math.inf
            prune = self._decide(trainer.current_epoch, value)
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune and self.pruned_epoch is None:
            self.pruned_epoch = trainer.current_epoch
            trainer.should_stop = True
            if trainer.is_global_zero:
                log.info(
                    "trial %d%s pruned after epoch %d (%s=%s)",
                    self.link.number,
                    "" if self.link.fold is None else f" fold {self.link.fold}",
                    self.pruned_epoch,
                    monitor,
                    self.reported.get(self.pruned_epoch),
                )

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._talks_to_storage(trainer) and self._trial is not None and self._pending:
            self._flush()  # reports that waited for the database go first (retried through an outage)
        if self.pruned_epoch is not None and self.raise_pruned:
            raise self.pruned_error()

    def pruned_error(self) -> optuna.TrialPruned:
        """What a pruned job raises: its return to the sweeper (every rank raises it, so none goes on alone)."""
        fold = "" if self.link.fold is None else f" fold {self.link.fold}"
        return optuna.TrialPruned(f"trial {self.link.number}{fold} pruned after epoch {self.pruned_epoch}")

    def run_summary(self) -> dict[str, Any]:
        return {
            "trial": self.link.number,
            "study": self.link.study,
            "fold": self.link.fold,
            "pruned": self.pruned_epoch is not None,
            "pruned_epoch": self.pruned_epoch,
            "reported": {str(k): v for k, v in sorted(self.reported.items())},
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"pruned_epoch": self.pruned_epoch, "reported": dict(self.reported)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned_epoch = state_dict.get("pruned_epoch")
        self.reported = {int(k): float(v) for k, v in state_dict.get("reported", {}).items()}
