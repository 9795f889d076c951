"""Config to objects, with the checks: :func:`prepare_run` (the config and the run directory, threads, seed) and
:func:`build` (data, model with optimizer/scheduler, callbacks, loggers, trainer). Every bad value surfaces here as a
:class:`~lightning_reg.errors.ConfigError`, before any training step.
"""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import missing_target_reason, trainer_callbacks
from lightning_reg.app.config import find_conf_dir, instantiate_node, threads_per_job
from lightning_reg.app.job import RunSetup, _check_output_dir, trial_callback
from lightning_reg.callbacks.checkpoint import SaveOnSigterm
from lightning_reg.callbacks.history import MetricsHistory
from lightning_reg.callbacks.monitor_check import MonitorCheck
from lightning_reg.callbacks.rng_state import RNGState
from lightning_reg.core.checks import check_optimizer_args, check_scheduler_args, check_seed, check_trainer_args
from lightning_reg.errors import ConfigError, check_bool, check_int
from lightning_reg.study import trial_callbacks

__all__ = ["CONF_DIR", "Parts", "build", "build_model", "prepare_run"]

log = logging.getLogger("lightning_reg.app.build")

#: The packaged ``conf/`` folder. Found without raising: when it is missing this is where it should be, and
#: :func:`~lightning_reg.app.config.conf_dir` (called by :func:`~lightning_reg.train.main`) says so when the configs are
#: needed.
CONF_DIR = str(find_conf_dir() or Path(__file__).resolve().parents[1] / "conf")


def _callbacks(trainer: pl.Trainer) -> list[pl.Callback]:
    return list(trainer.callbacks)  # type: ignore[attr-defined]  # set by Lightning's callback connector


def _check_missing(cfg: DictConfig) -> None:
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    if missing:
        example = " ".join(f"{k}=<value>" for k in missing)
        raise ConfigError(f"required config value(s) missing: {', '.join(missing)}. Set them, e.g. `{example}`.")


def _resolve_model_target(cfg: DictConfig) -> Any:
    target = cfg.model.get("_target_") if isinstance(cfg.model, DictConfig) else None
    if not target:
        raise ConfigError("`model._target_` must name a LightningModule class; got no `_target_` in `model`.")
    try:
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - hydra raises ImportError or ValueError with its own text
        raise ConfigError(
            f"`model._target_` must name an importable LightningModule class; got {target!r} ({err})."
        ) from None
    if inspect.isclass(obj) and not issubclass(obj, pl.LightningModule):
        raise ConfigError(
            f"`model._target_` must name a LightningModule subclass; got {target!r}, a subclass of "
            f"{', '.join(b.__name__ for b in obj.__mro__[1:3])}."
        )
    return obj


def build_model(cfg: DictConfig, datamodule: Any) -> pl.LightningModule:
    """Instantiate ``cfg.model``, passing optimizer/scheduler and data shape only where the model takes them."""
    target = _resolve_model_target(cfg)
    try:
        params: dict[str, inspect.Parameter] = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for key in ("input_shape", "num_classes"):
        if key in cfg.model and cfg.model[key] is None and hasattr(datamodule, key):
            kwargs[key] = getattr(datamodule, key)
    for key in ("optimizer", "scheduler"):
        node = cfg.get(key)
        if not node:
            continue
        if key in params or takes_kwargs:
            kwargs[key] = instantiate_node(node, key)
        else:
            log.warning(
                "%s does not take `%s`; it configures its own optimizers, so the `%s` config group is not used.",
                target.__name__,
                key,
                key,
            )
    try:
        model = instantiate_node(cfg.model, "model", **kwargs)
    except ConfigError as err:
        passed = [k for k in ("optimizer", "scheduler") if k in kwargs and k not in params and f"'{k}'" in str(err)]
        if takes_kwargs and passed:
            key = passed[0]
            raise ConfigError(
                f"model: {target.__name__}.__init__ takes **kwargs, so the entry point passed `{key}` (the "
                f"`{key}` config group) to it, and a class it forwards to rejected it: {err}. Give "
                f"{target.__name__} an explicit `{key}` argument, or opt out with {key}=null on the command line."
            ) from None
        raise
    if not isinstance(model, pl.LightningModule):
        raise ConfigError(
            f"`model._target_` must build a LightningModule; {cfg.model._target_!r} returned {type(model).__name__}."
        )
    return model


def _instantiate_dict(node: Any, group: str, base: type) -> list[Any]:
    out: list[Any] = []
    if not node:
        return out
    for name, sub in node.items():
        if not sub or "_target_" not in sub:
            continue
        why = missing_target_reason(str(sub["_target_"]))
        if why is not None:
            raise ConfigError(
                f"`{group}.{name}._target_` = {sub['_target_']!r}: {why}. Upgrade Lightning "
                f"(pip install 'lightning>=2.6') or remove `{group}.{name}`."
            )
        obj = instantiate_node(sub, f"{group}.{name}")
        if not isinstance(obj, base):
            raise ConfigError(f"`{group}.{name}._target_` must build a {base.__name__}; got {type(obj).__name__}.")
        out.append(obj)
    return out


def _plain(node: Any) -> dict[str, Any]:
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else None
    if not isinstance(plain, dict):
        return {}
    return {str(k): v for k, v in plain.items() if not str(k).startswith("_")}


def _check_settings(cfg: DictConfig) -> None:
    """Values that Lightning or torch would accept and then misuse (lr=0, max_epochs=0, step_size=0...)."""
    check_seed(cfg.get("seed"))
    if isinstance(cfg.get("trainer"), DictConfig):
        check_trainer_args(_plain(cfg.trainer))
    opt = cfg.get("optimizer")
    if isinstance(opt, DictConfig) and opt.get("_target_"):
        try:
            target = get_object(opt._target_)
        except Exception:  # noqa: BLE001 - reported by instantiate with Hydra's own message
            target = None
        if target is not None:
            check_optimizer_args(target, _plain(opt))
    sched = cfg.get("scheduler")
    if isinstance(sched, DictConfig) and isinstance(sched.get("scheduler"), DictConfig):
        check_scheduler_args(_plain(sched.scheduler))


@dataclass
class Parts:
    """Everything :func:`build` instantiates from a config.

    Example:
        >>> import tempfile
        >>> from lightning_reg.app.config import compose_train_config
        >>> cfg = compose_train_config(["trainer=debug", "logger=none", f"paths.output_dir={tempfile.mkdtemp()}"])
        >>> parts = build(cfg)  # nothing is trained yet
        >>> type(parts.datamodule).__name__, type(parts.model).__name__, parts.history in parts.trainer.callbacks
        ('DigitsDataModule', 'MLPClassifier', True)
    """

    datamodule: pl.LightningDataModule
    model: pl.LightningModule
    trainer: pl.Trainer
    history: MetricsHistory


def build(cfg: DictConfig) -> Parts:
    """Instantiate data, model (with optimizer/scheduler), callbacks, loggers and trainer; no training.

    Every bad value surfaces here as a :class:`~lightning_reg.errors.ConfigError`, before any step runs.
    """
    _check_missing(cfg)
    _check_settings(cfg)
    datamodule = instantiate_node(cfg.data, "data")
    model = build_model(cfg, datamodule)
    if check_bool("test", cfg.get("test", True)) and type(model).test_step is pl.LightningModule.test_step:
        raise ConfigError(
            f"`test=true` needs a test_step, and {type(model).__name__} defines none; add one, or set test=false."
        )
    history = MetricsHistory()
    callbacks = _instantiate_dict(cfg.get("callbacks"), "callbacks", pl.Callback) + [history, RNGState()]
    # SIGTERM (a preemption): last.ckpt written before the run ends, for ckpt_path=last.
    callbacks.append(SaveOnSigterm(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"))
    optimized = cfg.get("optimized_metric")
    names = list(optimized) if OmegaConf.is_list(optimized) or isinstance(optimized, (list, tuple)) else [optimized]
    # Logged metrics are namespaced (val/acc); run-level numbers such as fit_seconds are not logged.
    callbacks.append(MonitorCheck(extra=[("optimized_metric", str(m)) for m in names if m and "/" in str(m)]))
    loggers = _instantiate_dict(cfg.get("logger"), "logger", pl.loggers.Logger)
    trainer: pl.Trainer = instantiate_node(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    # Lightning added the trial's pruning through our callbacks_factory entry point; without the package's entry
    # points (run from a source tree that was never installed) it is added here.
    if trial_callback(_callbacks(trainer)) is None:
        trainer_callbacks(trainer).extend(trial_callbacks(cfg.get("optimized_metric")))
    return Parts(datamodule, model, trainer, history)


def prepare_run(cfg: DictConfig) -> RunSetup:
    """Check the composed config and the run directory, then set the thread count and the seed.

    Raises :class:`~lightning_reg.errors.ConfigError` or :class:`~lightning_reg.app.run_dir.RunDirError` before
    anything is built or written.
    """
    _check_missing(cfg)
    output_dir = Path(cfg.paths.output_dir)
    setup = RunSetup(output_dir, _check_output_dir(cfg, output_dir))
    _check_settings(cfg)
    threads = cfg.get("torch_threads")
    if threads is not None:
        torch.set_num_threads(check_int("torch_threads", threads, low=1))
        if threads == threads_per_job():
            # One of several joblib jobs: processes it starts (DDP ranks, DataLoader workers) read OpenMP's
            # variable, so they get the same share; a value in the environment wins.
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    pl.seed_everything(cfg.seed, workers=True)
    return setup
