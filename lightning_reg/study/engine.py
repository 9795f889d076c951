"""Optuna as the sweep engine: storages, samplers, pruners and the study's bookkeeping.

Workers on any number of machines share one study through one storage. Nothing here schedules anything:
each worker asks the storage for the next trial and tells it the result. This module holds the parts that
know Optuna and nothing of Hydra or Lightning, so that the sweeper plugin, the training job and the report
use the same rules:

- which trials count as finished (complete, pruned, or failed by their job) and which are still live;
- a trial asked by a worker that lost a race for the last slot (``surplus``) is failed at once, never run;
- a worker killed mid-trial stops its heartbeat; the trial is failed and retried by Optuna's callback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import GridSampler
from optuna.trial import FrozenTrial, TrialState
from typing_extensions import override

from lightning_reg.errors import ConfigError
from lightning_reg.study.options import PRUNER_NAMES

__all__ = [
    "ATTR",
    "GridSamplerAskTell",
    "HeartbeatThread",
    "build_pruner",
    "default_storage_url",
    "finished_trials",
    "is_finished",
    "is_live",
    "mask_url",
    "check_sqlite_storage",
    "open_storage",
    "storage_of",
    "trial_id_of",
]

log = logging.getLogger("lightning_reg.study")

#: Every user-attribute key this package writes on trials and studies (nothing writes a key not listed here).
ATTR = {
    "status": "lightning_reg:status",  # completed | pruned | failed | surplus (set by the job or the sweeper)
    "pruned_epoch": "lightning_reg:pruned_epoch",
    "epochs": "lightning_reg:epochs_trained",
    "max_epochs": "lightning_reg:max_epochs",
    "job_dir": "lightning_reg:job_dir",
    "subdir": "lightning_reg:subdir",  # the job directory a requeued (interrupted) trial's retry resumes
    "worker": "lightning_reg:worker",
    "group": "lightning_reg:group",
    "group_seq": "lightning_reg:group_seq",
    "fold_values": "lightning_reg:fold_values:",  # + fold index: that fold's per-epoch values
    "stop": "lightning_reg:stop",  # set when one fold of a trial was pruned: the other folds stop too
    "fold_results": "lightning_reg:fold_results",  # a cross-validated trial's value per fold
    "retry_of": "lightning_reg:retry_of",  # a requeued trial: the number of the interrupted trial it repeats
    # Study attributes:
    "confirm": "lightning_reg:confirm",  # the confirmation table
    "optimized_metric": "lightning_reg:optimized_metric",  # the metric the study optimizes (checked on joining)
    "params": "lightning_reg:params",  # the search space as written in hydra.sweeper.params
    "search_space": "lightning_reg:search_space",  # the parsed search space (checked on joining)
}


class GridSamplerAskTell(GridSampler):
    """Optuna's :class:`~optuna.samplers.GridSampler` for ask-and-tell workers.

    The stock sampler calls ``study.stop()`` when the grid is exhausted, which Optuna only allows inside
    ``study.optimize``; with ask and tell that raises in ``tell``. Our workers stop on their own count of
    finished trials, so this subclass only skips that call.

    Example:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(sampler=GridSamplerAskTell({"x": [1, 2]}, seed=0))
        >>> for _ in range(2):
        ...     trial = study.ask()
        ...     _ = study.tell(trial, trial.suggest_categorical("x", [1, 2]))
        >>> sorted(t.params["x"] for t in study.trials)
        [1, 2]
    """

    @override
    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


def trial_id_of(trial: optuna.trial.BaseTrial | FrozenTrial) -> int:
    """The storage id of a trial. Optuna keeps it private (``_trial_id``); this is the one place we read it.

    Example:
        >>> study = optuna.create_study()
        >>> trial_id_of(study.ask()) >= 0
        True
    """
    trial_id = getattr(trial, "_trial_id", None)
    if not isinstance(trial_id, int):
        raise RuntimeError(
            f"Optuna's {type(trial).__name__} has no integer `_trial_id` any more; "
            "lightning_reg.study.engine.trial_id_of needs updating for this Optuna version."
        )
    return trial_id


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object behind a study (Optuna's private ``Study._storage``; read only here)."""
    storage = getattr(study, "_storage", None)
    if not isinstance(storage, optuna.storages.BaseStorage):
        raise RuntimeError(
            "optuna.Study has no `_storage` any more; lightning_reg.study.engine.storage_of "
            "needs updating for this Optuna version."
        )
    return storage


def mask_url(url: str | None) -> str:
    """The storage URL with any password replaced by ``***``, for logs, errors and reports.

    Example:
        >>> mask_url("postgresql://sweep:s3cret@db.example:5432/optuna")
        'postgresql://sweep:***@db.example:5432/optuna'
        >>> mask_url("sqlite:///tmp/optuna.db")
        'sqlite:///tmp/optuna.db'
    """
    if not url:
        return str(url)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy parses
        from lightning_reg.errors import mask_secrets

        return mask_secrets(url)


def default_storage_url(sweep_dir: str | Path) -> str:
    """The study's storage when none is given: an SQLite file inside the sweep directory.

    Example:
        >>> default_storage_url("/runs/sweep")
        'sqlite:////runs/sweep/optuna.db'
    """
    return f"sqlite:///{Path(sweep_dir).absolute() / 'optuna.db'}"


_OPTUNA_TABLES = ("studies", "trials", "version_info")


def _sqlite_problem(path: Path) -> str | None:
    """Why the existing file at ``path`` is not an Optuna SQLite storage, or ``None`` when it is one."""
    import sqlite3

    if path.stat().st_size == 0:
        return "an empty file (0 bytes)"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        return f"not a readable SQLite database ({err})"
    missing = [t for t in _OPTUNA_TABLES if t not in tables]
    if missing:
        return f"an SQLite database without Optuna's table(s) {', '.join(missing)}"
    return None


def check_sqlite_storage(url: str, wait: float = 5.0) -> None:
    """Refuse an SQLite storage file that exists but is not an Optuna study storage (empty, damaged, other tables),
    before anything is written into it. A missing file is a new storage. A file another worker is creating at
    this moment gets ``wait`` seconds to receive its tables.

    Example:
        >>> import tempfile
        >>> empty = Path(tempfile.mkdtemp()) / "optuna.db"
        >>> empty.touch()
        >>> check_sqlite_storage(f"sqlite:///{empty}", wait=0)
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: the study storage 'sqlite:///.../optuna.db' is an empty file (0 bytes), not an Optuna study: refusing to open it as a new study. Move the file away if it is a leftover, or use a fresh hydra.sweep.dir (or another hydra.sweeper.storage).
    """
    if not url.startswith("sqlite:///"):
        return
    name = url.split("sqlite:///", 1)[1].split("?", 1)[0]
    if not name or name == ":memory:" or not Path(name).exists():
        return
    path = Path(name)
    deadline = time.monotonic() + wait
    while (why := _sqlite_problem(path)) is not None and time.monotonic() < deadline:
        time.sleep(0.25)
    if why is not None:
        raise ConfigError(
            f"the study storage {mask_url(url)!r} is {why}, not an Optuna study: refusing to open it as a new "
            "study. Move the file away if it is a leftover, or use a fresh hydra.sweep.dir (or another "
            "hydra.sweeper.storage)."
        )


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = 10,
    grace_period: int | None = None,
    max_retry: int | None = 3,
    retry: float | None = None,
    wait_to_open: bool = False,
) -> Any:
    """Open (and create, if new) the relational storage at ``url``, with heartbeats and failed-trial retry.

    ``url`` is any SQLAlchemy URL Optuna's RDB storage takes: ``sqlite:///path``, ``postgresql://user:pw@host/db``
    (psycopg 3 with SQLAlchemy ≥ 2.1), ``mysql+pymysql://...``. An unreachable server is a
    :class:`~lightning_reg.errors.ConfigError` that names the URL with its password masked. With ``retry``
    (seconds), every call of the returned storage rides out a database outage that long
    (:class:`~lightning_reg.study.retry.RetryingStorage`); with ``wait_to_open`` too, so does opening it (a
    job's link, opened mid-sweep). A worker opens without waiting: a storage that cannot be reached when the
    sweep starts (a wrong host or port) is an error at once.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> storage = open_storage(default_storage_url(d))
        >>> storage.get_heartbeat_interval()
        10
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            "`hydra.sweeper.storage` must be null (an SQLite file in the sweep directory) or a database URL "
            f"such as sqlite:///path/optuna.db or postgresql://user:password@host:5432/db; got {mask_url(str(url))!r}."
        )
    check_sqlite_storage(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Several workers on one machine write the same file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
    from lightning_reg.study.retry import is_outage, wrap

    down_since: float | None = None
    try:
        attempt = 0
        while True:
            try:
                rdb = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=callback,
                )
                if down_since is not None:
                    log.warning("the study storage reachable again after %.1f s", time.monotonic() - down_since)
                return wrap(rdb, retry)
            except Exception as err:  # noqa: BLE001 - see below
                # A database outage while opening: ridden out like any later call (hydra.sweeper.storage_retry).
                if retry is not None and wait_to_open and is_outage(err):
                    now = time.monotonic()
                    if down_since is None:
                        down_since = now
                        log.warning("the study storage cannot be reached; retrying for up to %.0f s", retry)
                    if now - down_since < retry:
                        time.sleep(min(2.0, max(0.05, retry - (now - down_since))))
                        continue
                    raise
                # Workers that start together on a new database race to create its tables; the loser sees
                # "already exists" (SQLite) or a duplicate key (PostgreSQL). The tables are there: try again.
                text = str(err).lower()
                if attempt == 7 or not any(m in text for m in ("already exists", "duplicate key", "unique constraint")):
                    raise
                attempt += 1
                time.sleep(0.2 * attempt)
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"`hydra.sweeper.storage` {mask_url(url)!r} needs the database driver {err.name!r}, which is not "
            'installed. For PostgreSQL: pip install "lightning-reg[optuna]" (psycopg 3).'
        ) from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy's OperationalError, ArgumentError, ...
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise ConfigError(
            f"`hydra.sweeper.storage`: cannot open the study storage {mask_url(url)!r}: {type(err).__name__}: "
            f"{mask_url(reason) if '://' in reason else reason}"
        ) from None


def build_pruner(node: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """Instantiate a pruner config (``{_target_: optuna.pruners.MedianPruner, ...}``); ``None`` prunes nothing.

    Example:
        >>> type(build_pruner({"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2})).__name__
        'MedianPruner'
        >>> type(build_pruner(None)).__name__
        'NopPruner'
    """
    if not node:
        return optuna.pruners.NopPruner()
    from hydra.utils import instantiate

    try:
        pruner = instantiate(dict(node), _convert_="all")
    except Exception as err:  # noqa: BLE001 - hydra wraps the target's error
        cause = err.__cause__ or err
        raise ConfigError(f"`hydra.sweeper.pruner`: {type(cause).__name__}: {cause}") from None
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise ConfigError(
            f"`hydra.sweeper.pruner` must build an optuna.pruners.BasePruner (names: {', '.join(PRUNER_NAMES)}); "
            f"got {type(pruner).__name__} from {node.get('_target_')!r}."
        )
    return pruner


def is_finished(trial: FrozenTrial) -> bool:
    """Counts toward ``n_trials``: complete, pruned, or failed by its own job (not a lost worker, not surplus)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get(ATTR["status"]) == "failed"


def is_live(trial: FrozenTrial) -> bool:
    """Running now, or waiting for a worker (a retried trial)."""
    return trial.state in (TrialState.RUNNING, TrialState.WAITING)


def finished_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``n_trials``, in trial-number order."""
    return sorted((t for t in trials if is_finished(t)), key=lambda t: t.number)


class HeartbeatThread:
    """Record a trial's heartbeat every ``interval`` seconds while its job runs (ask-and-tell has no thread).

    A worker killed with ``kill -9`` stops beating; after the storage's grace period any worker's
    :func:`optuna.storages.fail_stale_trials` fails the trial and Optuna's retry callback re-queues it.

    Example:
        >>> import tempfile
        >>> storage = open_storage(default_storage_url(tempfile.mkdtemp()), heartbeat_interval=1)
        >>> study = optuna.create_study(storage=storage)
        >>> trial = study.ask()
        >>> with HeartbeatThread(storage, [trial_id_of(trial)]):
        ...     pass
    """

    def __init__(self, storage: Any, trial_ids: Sequence[int]) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        assert self.interval is not None
        while True:
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 - a missed beat is retried; the job must go on
                    log.warning("could not record the heartbeat of trial id %s: %s", trial_id, err)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> HeartbeatThread:
        if self.interval:
            self._thread = threading.Thread(target=self._beat, name="lightning-reg-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
