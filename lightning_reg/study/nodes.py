"""Multi-node jobs in a sweep: a worker that is one node of a multi-node DDP job.

Promise kept here: a sweep worker may itself be a multi-node DDP job (``srun`` on N nodes, each running the same
command). Node 0 asks and tells; every other node trains the trials node 0 drew, found through the key shared by
the job's nodes (``MASTER_ADDR``, ``MASTER_PORT`` and ``SLURM_JOB_ID``), so that all nodes join the same
``init_process_group``. Neither Optuna nor Hydra knows about nodes, so no public mechanism does this.
"""

from __future__ import annotations

import logging
import os
import time
from typing import cast

import optuna

from lightning_reg.errors import ConfigError
from lightning_reg.study.engine import ATTR, trial_id_of
from lightning_reg.study.jobs import Worker, fold_variants

__all__ = ["FollowerMixin", "descendants", "group_key", "node_rank", "signal_descendants"]

log = logging.getLogger("lightning_reg.study")


def group_key(environ: dict[str, str] | None = None) -> str | None:
    """The key shared by every node of one multi-node DDP job (``None`` when the job is single-node)."""
    env = os.environ if environ is None else environ
    addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
    if not addr or not port:
        return None
    return f"{addr}:{port}:{env.get('SLURM_JOB_ID', '')}"


def node_rank(environ: dict[str, str] | None = None) -> int:
    """This process's node in a multi-node job started by SLURM or torchrun (0 when there is none)."""
    env = os.environ if environ is None else environ
    for key in ("NODE_RANK", "GROUP_RANK", "SLURM_NODEID"):
        value = env.get(key)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"environment variable {key} must be an integer node rank; got {value!r}.") from None
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...), from Linux's ``/proc``; ``[]`` elsewhere.

    Example:
        >>> import subprocess, sys
        >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        >>> child.pid in descendants(os.getpid()) or not os.path.isdir("/proc")
        True
        >>> child.kill(); _ = child.wait()
    """
    if not os.path.isdir("/proc"):
        return []
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def signal_descendants(signum: int) -> None:
    """Send ``signum`` to every process this one started, directly or not: a worker's SIGTERM reaches its jobs in
    other processes (joblib's loky workers, a job's DDP ranks) whatever started them. A plain ``kill <pid>``
    signals one process; ``scancel`` signals the whole step, and then this signal is a harmless second one
    (multiprocessing's and loky's resource trackers ignore SIGTERM)."""
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class FollowerMixin:
    """:meth:`follow`: the loop of a node > 0 of a multi-node job (mixed into :class:`StudyWorker`)."""

    def follow(self, node: int) -> int:
        """On node ``node`` > 0 of a multi-node job: train the trials node 0 draws, never tell. Returns the count."""
        w = cast(Worker, self)  # a mixin of StudyWorker only
        if w.group is None:
            raise ConfigError(
                f"this process is node {node} of a multi-node job but MASTER_ADDR/MASTER_PORT are not set, so it "
                "cannot find node 0's trials. Start every node with the same MASTER_ADDR and MASTER_PORT."
            )
        seq = 0
        variants = fold_variants(w.num_folds, w.keys)
        while True:
            trials = w.study.get_trials(deepcopy=False)
            mine = [
                t
                for t in trials
                if t.user_attrs.get(ATTR["group"]) == w.group and t.user_attrs.get(ATTR["group_seq"]) == seq
            ]
            if mine:
                trial = mine[0]
                proxy = optuna.trial.Trial(w.study, trial_id_of(trial))
                specs = w.specs_for(proxy, trial.params, variants, f"{trial.number}/node{node}", role="follower")
                log.info("node %d follows trial %d %s", node, trial.number, trial.params)
                w.launch(specs)
                seq += 1
                continue
            done = w.study.user_attrs.get(f"{ATTR['group']}:{w.group}:done")
            if done is not None and seq >= done:
                return seq
            time.sleep(w.poll_interval)
