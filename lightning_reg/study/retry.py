"""Ride out a database outage: every storage call of a worker and of a job's pruning link is retried with backoff.

:class:`RetryingStorage` wraps the study's storage (Optuna's cached RDB storage) and retries each call that fails
because the database cannot be reached (a restarted or unreachable PostgreSQL server, a dropped connection, a
locked SQLite file) with exponential backoff, for up to ``budget`` seconds from the outage's first failure
(``hydra.sweeper.storage_retry``). It logs one line when an outage starts and one when it ends. When an outage
outlasts the budget, the call raises :class:`StorageOutage`, one line. Errors that are not an outage (a duplicate
study, a finished trial, bad data) are raised at once, as before.

Inside :meth:`RetryingStorage.no_wait` a failing call raises :class:`StorageOutage` at once instead: the job's
pruning link reports that way, so that training goes on during an outage and the reports follow later.

Example:
    >>> import optuna, tempfile
    >>> from lightning_reg.study.engine import default_storage_url, open_storage
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> storage = open_storage(default_storage_url(tempfile.mkdtemp()), retry=60)
    >>> type(storage).__name__, storage.budget
    ('RetryingStorage', 60.0)
    >>> study = optuna.create_study(storage=storage)
    >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    >>> len(study.trials)
    2
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from typing_extensions import override

from lightning_reg.study.options import default

__all__ = ["DEFAULT_BUDGET", "RetryingStorage", "StorageOutage", "is_outage", "wrap"]

log = logging.getLogger("lightning_reg.study")

#: Seconds an outage is ridden out by default (``hydra.sweeper.storage_retry``).
DEFAULT_BUDGET = float(default("storage_retry"))  # hydra.sweeper.storage_retry's default


class StorageOutage(RuntimeError):
    """The study's database could not be reached for longer than the retry budget (one line)."""


def is_outage(err: BaseException) -> bool:
    """True when ``err`` means the database could not be reached (not that the request was wrong).

    Example:
        >>> import sqlalchemy.exc
        >>> is_outage(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused")))
        True
        >>> is_outage(optuna.exceptions.DuplicatedStudyError("exists"))
        False
    """
    import sqlalchemy.exc as sa

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, StorageOutage):
            return True
        if isinstance(cur, (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError)):
            return True
        if isinstance(cur, sa.DBAPIError) and cur.connection_invalidated:
            return True
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _reason(err: BaseException) -> str:
    root: BaseException = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(getattr(root, "orig", None) or root).strip().splitlines()
    return f"{type(root).__name__}: {text[0] if text else ''}"


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """A storage that retries the calls of ``inner`` through a database outage of up to ``budget`` seconds."""

    def __init__(self, inner: BaseStorage, budget: float = DEFAULT_BUDGET, what: str = "the study storage") -> None:
        self._inner = inner
        self.budget = float(budget)
        self._what = what
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._local = threading.local()

    # -- the retry loop ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def no_wait(self) -> Iterator[None]:
        """Within the block, a call that fails for an outage raises :class:`StorageOutage` at once."""
        before = getattr(self._local, "no_wait", False)
        self._local.no_wait = True
        try:
            yield
        finally:
            self._local.no_wait = before

    def _call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        delay = 0.5
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as err:
                if not is_outage(err):
                    raise
                now = time.monotonic()
                with self._lock:
                    if self._down_since is None:
                        self._down_since = now
                        log.warning(
                            "%s cannot be reached (%s); retrying for up to %.0f s",
                            self._what,
                            _reason(err),
                            self.budget,
                        )
                    down = now - self._down_since
                if getattr(self._local, "no_wait", False):
                    raise StorageOutage(f"{self._what} cannot be reached ({_reason(err)})") from err
                if down >= self.budget:
                    raise StorageOutage(
                        f"{self._what} could not be reached for {down:.0f} s (hydra.sweeper.storage_retry="
                        f"{self.budget:g}): {_reason(err)}"
                    ) from err
                time.sleep(min(delay, max(0.05, self.budget - down)))
                delay = min(delay * 2, 10.0)
                continue
            if self._down_since is not None:
                with self._lock:
                    if self._down_since is not None:
                        log.warning("%s reachable again after %.1f s", self._what, time.monotonic() - self._down_since)
                        self._down_since = None
            return result

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            return self._call(name, attr, *args, **kwargs)

        return retried

    # Optuna checks ``isinstance(storage, BaseHeartbeat)`` and then calls these; an inner storage without
    # heartbeats answers like Optuna's own storages without them.
    @override
    def get_heartbeat_interval(self) -> int | None:
        fn = getattr(self._inner, "get_heartbeat_interval", None)
        return fn() if fn is not None else None

    @override
    def get_heartbeat_stale_trial_callback(self) -> Any:
        fn = getattr(self._inner, "get_heartbeat_stale_trial_callback", None)
        return fn() if fn is not None else None

    @override
    def get_failed_trial_callback(self) -> Any:
        return self.get_heartbeat_stale_trial_callback()


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, getattr(self._inner, name), *args, **kwargs)

    method.__name__ = name
    return override(method)


_PASS_THROUGH = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback", "get_failed_trial_callback"}
for _name in sorted(
    {n for n, v in vars(BaseStorage).items() if callable(v) and not n.startswith("__")}
    | {n for n, v in vars(BaseHeartbeat).items() if callable(v) and not n.startswith("__")}
):
    if _name not in _PASS_THROUGH:
        setattr(RetryingStorage, _name, _delegate(_name))
RetryingStorage.__abstractmethods__ = frozenset()


def wrap(storage: Any, budget: float | None) -> Any:
    """``storage`` (an RDB storage) in Optuna's cache and a :class:`RetryingStorage`; unchanged when ``budget`` is None."""
    if budget is None:
        return storage
    inner = storage
    if isinstance(storage, optuna.storages.RDBStorage):
        inner = optuna.storages.get_storage(storage)  # Optuna's _CachedStorage, as a study would build
    return RetryingStorage(inner, budget)  # type: ignore[abstract]  # its methods are set above
