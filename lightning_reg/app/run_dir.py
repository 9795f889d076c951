"""The run-directory lifecycle: a run directory is *new*, *unfinished* or *finished*, and nothing in it is lost.

- **new**: it does not exist, or holds neither checkpoints nor ``metrics.json`` (Hydra's ``.hydra/`` files of a
  run that was refused before training do not count).
- **unfinished**: it holds checkpoints and no final ``metrics.json`` (the run was killed, or failed and its
  ``metrics.json`` says ``status: failed`` or ``status: interrupted`` (SIGTERM)). It is resumed only with a ``ckpt_path`` inside it, or
  ``ckpt_path=last``; anything else is refused, with the command that would resume it.
- **finished**: it holds a final ``metrics.json``. Nothing is written into it again; continue its training in
  a new directory with ``ckpt_path=<its checkpoint>``.

These checks are pure (paths and files only); :mod:`lightning_reg.app.hydra_callbacks` runs them before Hydra
writes a job's files, and :func:`lightning_reg.app.train.train` runs them again for callers of the Python API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_reg.errors import ConfigError

__all__ = [
    "FINISHED",
    "LAST",
    "NEW",
    "UNFINISHED",
    "RunDirError",
    "archive_failed_record",
    "check_run_dir",
    "check_sweep_dir",
    "read_status",
    "run_state",
]

NEW, UNFINISHED, FINISHED = "new", "unfinished", "finished"
#: The ``metrics.json`` statuses of a run that did not end: with checkpoints, its directory is unfinished.
RESUMABLE = ("failed", "interrupted")
LAST = "last"


class RunDirError(ConfigError):
    """A run or sweep directory that may not be written into (it belongs to another run or sweep).

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> _ = (run / "metrics.json").write_text('{"status": "completed"}')
        >>> check_run_dir(run, None)
        Traceback (most recent call last):
        ...
        lightning_reg.app.run_dir.RunDirError: run directory '...' already holds metrics.json (status 'completed') from a finished run; ...
        >>> issubclass(RunDirError, ConfigError)
        True
    """


def _checkpoints(run_dir: Path) -> list[Path]:
    ckpt_dir = run_dir / "checkpoints"
    return sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []


def read_status(run_dir: Path) -> str | None:
    """The ``status`` in ``run_dir/metrics.json``; ``"unknown"`` when the file is not a JSON object with one.

    Example:
        >>> read_status(Path("/nonexistent")) is None
        True
    """
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return "unknown"
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else "unknown"


def run_state(run_dir: Path) -> str:
    """``"new"``, ``"unfinished"`` or ``"finished"`` (see the module docstring).

    Example:
        >>> run_state(Path("/nonexistent/run"))
        'new'
    """
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    has_ckpts = bool(_checkpoints(run_dir))
    if status is None:
        return UNFINISHED if has_ckpts else NEW
    if status in RESUMABLE and has_ckpts:
        return UNFINISHED
    return FINISHED


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_run_dir(run_dir: Path | str, ckpt_path: Any, *, allow_new_last: bool = False) -> Path | None:
    """Check that a run may write into ``run_dir`` with this ``ckpt_path``; return the checkpoint to resume from.

    ``ckpt_path="last"`` means ``run_dir/checkpoints/last.ckpt``; in a new directory it is an error, unless
    ``allow_new_last`` (the new jobs of a resumed sweep), where it means "start fresh".
    Raises :class:`RunDirError` for every refusal, before anything is written.

    Example:
        >>> check_run_dir("/nonexistent/run", None) is None
        True
    """
    run_dir = Path(run_dir)
    blocked = next((p for p in [run_dir, *run_dir.parents] if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(
            f"`hydra.run.dir` {str(run_dir)!r} cannot be created: {str(blocked)!r} is a file, not a directory. "
            "Choose a run directory under a folder (hydra.run.dir=... or paths.log_dir=...)."
        )
    state = run_state(run_dir)
    if ckpt_path is not None and not isinstance(ckpt_path, (str, Path)):
        raise ConfigError(
            f"`ckpt_path` must be a checkpoint file path or 'last'; got {ckpt_path!r} ({type(ckpt_path).__name__})."
        )
    if state == FINISHED:
        raise RunDirError(
            f"run directory {str(run_dir)!r} already holds metrics.json (status {read_status(run_dir)!r}) from a "
            "finished run; refusing to overwrite it. Choose another hydra.run.dir (or paths.output_dir); to "
            f"continue that run's training, start a new directory with ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}."
        )
    if ckpt_path is None or str(ckpt_path) == "":
        if state == UNFINISHED:
            last = run_dir / "checkpoints" / "last.ckpt"
            raise RunDirError(
                f"run directory {str(run_dir)!r} holds checkpoints of an unfinished run ({', '.join(p.name for p in _checkpoints(run_dir))}) "
                "and no final metrics.json; refusing to overwrite them. Resume it with `ckpt_path=last` "
                f"(that is {last}), or choose another hydra.run.dir."
            )
        return None
    if str(ckpt_path) == LAST:
        last = run_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            return last
        if state == NEW and allow_new_last:
            return None
        found = ", ".join(p.name for p in _checkpoints(run_dir)) or "no checkpoints"
        raise ConfigError(
            f"`ckpt_path=last` resumes {last}, which does not exist (run directory {str(run_dir)!r} "
            f"is {state}: {found}). Pass the checkpoint's path, or drop ckpt_path to start a new run."
        )
    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise ConfigError(f"`ckpt_path` must be an existing checkpoint file or 'last'; got {str(ckpt_path)!r}.")
    if state == UNFINISHED and not _inside(ckpt, run_dir):
        raise RunDirError(
            f"`ckpt_path` {str(ckpt_path)!r} is not a checkpoint of the unfinished run in {str(run_dir)!r}; "
            "resuming another run's checkpoint there would mix two runs. Resume it with `ckpt_path=last`, or "
            "start the other checkpoint in a new directory."
        )
    return ckpt


def archive_failed_record(run_dir: Path) -> Path | None:
    """Before resuming a failed or interrupted run, move its ``metrics.json`` aside (``metrics.failed-1.json``,
    ``metrics.interrupted-1.json``...), never deleting it."""
    path = Path(run_dir) / "metrics.json"
    status = read_status(run_dir)
    if status not in RESUMABLE:
        return None
    k = 1
    while (target := path.with_name(f"metrics.{status}-{k}.json")).exists():
        k += 1
    path.rename(target)
    return target


def _sweep_identity(overrides: Any, sweeper_params: Any) -> tuple[list[str], Any]:
    """What makes two multiruns the same sweep: the task overrides (``ckpt_path=…`` aside: resuming a sweep adds
    ``ckpt_path=last``) and the sweeper's search space."""
    kept = sorted(str(o) for o in overrides or () if not str(o).lstrip("+~").startswith("ckpt_path="))
    return kept, sweeper_params or None


def _saved_identity(saved: Any) -> tuple[list[str], Any] | None:
    try:
        hydra_cfg = saved["hydra"]
        return _sweep_identity(hydra_cfg["overrides"]["task"], (hydra_cfg.get("sweeper") or {}).get("params"))
    except (KeyError, TypeError, AttributeError):
        return None


def check_sweep_dir(sweep_dir: Path | str, task_overrides: list[str], sweeper_params: Any = None) -> str:
    """Check that a multirun may write into ``sweep_dir``; return ``"new"`` or ``"resume"``.

    A directory holding another sweep's ``multirun.yaml`` (other task overrides) is refused; the same sweep
    (the same task overrides) is resumed. A directory with a run's files but no ``multirun.yaml`` is refused.

    Example:
        >>> check_sweep_dir("/nonexistent/sweep", ["model.dropout=0.0,0.5"])
        'new'
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.exists() or (sweep_dir.is_dir() and not any(sweep_dir.iterdir())):
        return NEW
    if not sweep_dir.is_dir():
        raise RunDirError(f"`hydra.sweep.dir` {str(sweep_dir)!r} is a file, not a directory.")
    saved_path = sweep_dir / "multirun.yaml"
    if not saved_path.is_file():
        if run_state(sweep_dir) != NEW or any(sweep_dir.glob("*/metrics.json")):
            raise RunDirError(
                f"`hydra.sweep.dir` {str(sweep_dir)!r} holds runs but no multirun.yaml; refusing to "
                "write a sweep into it. Choose another hydra.sweep.dir."
            )
        return NEW
    import yaml

    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RunDirError(
            f"`hydra.sweep.dir` {str(sweep_dir)!r}: its multirun.yaml cannot be read ({err}); refusing "
            "to write into it."
        ) from None
    before = _saved_identity(saved)
    now = _sweep_identity(task_overrides, sweeper_params)
    if before == now:
        return "resume"
    what = lambda ident: f"overrides {ident[0]}" + (f", sweeper params {ident[1]}" if ident and ident[1] else "")  # noqa: E731
    raise RunDirError(
        f"`hydra.sweep.dir` {str(sweep_dir)!r} holds another sweep ({what(before) if before else 'unreadable'}); "
        f"this one has {what(now)}. "
        "Refusing to write into it: its jobs, multirun.yaml and report would be replaced. Choose another "
        "hydra.sweep.dir, or repeat that sweep's exact overrides to resume it."
    )
