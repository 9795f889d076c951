"""Glue shared by the Hydra entry points (``lightning_reg.app.train``, ``lightning_reg.app.preview``).

Where the packaged ``conf/`` folder is, composing ``train.yaml`` without a run directory, and instantiating
a config node so that an error of its target comes out as one :class:`~lightning_reg.errors.ConfigError`
prefixed by the node's key. Nothing here imports Lightning or torch, so a command's ``--help`` stays fast.

Example:
    >>> node = {"_target_": "datetime.timedelta", "days": "x"}
    >>> instantiate_node(node, "data")
    Traceback (most recent call last):
    ...
    lightning_reg.errors.ConfigError: data: TypeError: unsupported type for timedelta days component: str
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from lightning_reg.errors import ConfigError

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = [
    "compose_train_config",
    "conf_dir",
    "conf_dir_candidates",
    "find_conf_dir",
    "instantiate_node",
    "run_hydra",
    "threads_per_job",
]


def conf_dir_candidates(here: Path | None = None) -> list[Path]:
    """Where ``train.yaml`` may live: inside the installed package (wheel) or at the repository top (editable).

    Example:
        >>> [p.name for p in conf_dir_candidates(Path("/site/lightning_reg"))]
        ['conf', 'conf']
    """
    here = Path(__file__).resolve().parents[1] if here is None else Path(here)
    return [here / "conf", here.parent / "conf"]


def find_conf_dir(here: Path | None = None) -> Path | None:
    """The first of :func:`conf_dir_candidates` that holds ``train.yaml``; ``None`` when none does.

    Example:
        >>> find_conf_dir(Path("/nonexistent/lightning_reg")) is None
        True
    """
    return next((c for c in conf_dir_candidates(here) if (c / "train.yaml").is_file()), None)


def conf_dir(here: Path | None = None) -> Path:
    """The folder holding ``train.yaml``; raises :class:`FileNotFoundError` naming the places looked at.

    Called where the configs are needed (composing, the entry point's start), never at import.

    Example:
        >>> conf_dir(Path("/nonexistent/lightning_reg"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: lightning_reg's configs were not found: no train.yaml in /nonexistent/lightning_reg/conf or /nonexistent/conf. Reinstall the package (pip install lightning-reg, or pip install -e . in a checkout).
    """
    found = find_conf_dir(here)
    if found is None:
        looked = " or ".join(str(c) for c in conf_dir_candidates(here))
        raise FileNotFoundError(
            f"lightning_reg's configs were not found: no train.yaml in {looked}. Reinstall the package "
            "(pip install lightning-reg, or pip install -e . in a checkout)."
        )
    return found


def run_hydra(task_function: Any) -> Any:
    """Run ``task_function`` as the Hydra app of ``conf/train.yaml``: once, or once per job of a multirun.

    Looks for the packaged configs first: a broken installation is one clear error (exit status 2), not a
    failure at import; so is a typo'd ``hydra.sweeper.<key>`` (one line naming the options). The task function's module name (``train``) is Hydra's job name: the run log is
    ``train.log``.
    """
    import sys

    import hydra

    try:
        config_path = str(conf_dir())
    except FileNotFoundError as err:
        print(f"lightning_reg: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    from lightning_reg.app.hydra_callbacks import sweeper_option_typo

    typo = sweeper_option_typo(sys.argv[1:], config_path)
    if typo is not None:
        print(f"lightning_reg: error: {typo}", file=sys.stderr, flush=True)
        sys.exit(2)
    return hydra.main(version_base="1.3", config_path=config_path, config_name="train")(task_function)()


def compose_train_config(overrides: Sequence[str], config_dir: Path | str | None = None) -> DictConfig:
    """Compose ``train.yaml`` with Hydra overrides (no run directory is created; Hydra's state is reset first).

    Example:
        >>> compose_train_config(["data.batch_size=7"]).data.batch_size
        7
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir or conf_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _as_config_error(key: str, err: BaseException) -> ConfigError:
    if isinstance(err, ConfigError):
        return ConfigError(f"{key}: {err}")
    return ConfigError(f"{key}: {type(err).__name__}: {err}")


def instantiate_node(node: Any, key: str, **kwargs: Any) -> Any:
    """Instantiate a config node; errors from the target come out as one ConfigError prefixed by ``key``.

    Objects in ``kwargs`` (callbacks, optimizer factories, scheduler specs) are passed to the target
    as they are, not merged into the config (Hydra would turn a dataclass into a dict).

    Example:
        >>> instantiate_node({"_target_": "fractions.Fraction", "numerator": 3}, "x", denominator=4)
        Fraction(3, 4)
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        target = instantiate(node, _convert_="all", **({"_partial_": True} if kwargs else {}))
    except InstantiationException as err:
        raise _as_config_error(key, err.__cause__ or err) from None
    if not kwargs:
        return target
    try:
        return target(**kwargs)
    except (ConfigError, TypeError, ValueError) as err:
        raise _as_config_error(key, err) from None
    except Exception as err:  # noqa: BLE001 - e.g. Lightning's MisconfigurationException
        if type(err).__name__ == "MisconfigurationException":
            raise _as_config_error(key, err) from None
        raise


def threads_per_job() -> int | None:
    """CPU cores ÷ concurrent jobs when this run is one of several that a joblib launcher runs at once, else None.

    The ``lightning_reg_threads_per_job`` resolver, registered when this module is imported (by the entry point,
    before Hydra composes): the joblib experiments set ``torch_threads`` to it, so two jobs on two cores get one
    thread each instead of two each (which oversubscribed the cores and gave no speed-up). A ``torch_threads=N``
    override replaces it. Cores are those this process may run on (its affinity mask).

    Example:
        >>> threads_per_job() is None  # not inside a Hydra job
        True
        >>> OmegaConf.create({"t": "${lightning_reg_threads_per_job:}"}).t is None
        True
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = getattr(HydraConfig.get(), "launcher", None) or {}
    target = str(launcher.get("_target_", ""))
    n_jobs = launcher.get("n_jobs")
    if "joblib" not in target.lower() or not isinstance(n_jobs, int):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = cores if n_jobs < 0 else n_jobs  # joblib: -1 means one job per core
    return max(1, cores // max(1, min(jobs, cores)))


if not OmegaConf.has_resolver("lightning_reg_threads_per_job"):
    OmegaConf.register_new_resolver("lightning_reg_threads_per_job", threads_per_job)
