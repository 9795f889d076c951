"""Pure checks of the train entry point's settings: optimizer and scheduler arguments, trainer counts, the
test step and the names the callbacks monitor. Each raises :class:`~lightning_reg.errors.ConfigError` naming
the option, what is allowed and the value given, before any training step.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from lightning_reg.errors import ConfigError, check_int, check_range

# Scheduler arguments that count epochs or steps (torch accepts 0 and then divides by it mid-epoch).
SCHEDULER_COUNTS = {"step_size": 1, "T_max": 1, "T_0": 1, "total_steps": 1, "step_size_up": 1, "total_iters": 0}


def check_optimizer_args(target: Any, args: Mapping[str, Any], key: str = "optimizer") -> None:
    """Check an optimizer config's arguments against ``target``'s signature and torch's own rules.

    ``lr`` must be a number > 0 (``lr=0`` trains nothing); the rest are checked by constructing the optimizer
    on one dummy parameter, so torch's own validation (``betas``, ``eps``, ``momentum``...) runs now.

    Example:
        >>> import torch
        >>> check_optimizer_args(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})
    """
    import torch

    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in args:
        if params and name not in params and not takes_kwargs:
            allowed = [p for p in params if p not in ("params", "self")]
            raise ConfigError(f"`{key}.{name}` is not an argument of {getattr(target, '__name__', target)}; "
                              f"allowed: {', '.join(allowed)}; got {name}={args[name]!r}.")
    if "lr" in args:
        lr = args["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise ConfigError(f"`{key}.lr` must be a number > 0; got {lr!r} ({type(lr).__name__}).")
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"`{key}.lr` must be a finite number > 0 (lr=0 trains nothing); got {lr!r}.")
    if inspect.isclass(target) and issubclass(target, torch.optim.Optimizer):
        from hydra.utils import instantiate

        # Nested configs (SAM's `base` optimizer) are built as the real instantiation would build them.
        built = {k: instantiate(v) if isinstance(v, Mapping) and "_target_" in v else v for k, v in args.items()}
        try:
            target([torch.nn.Parameter(torch.zeros(1))], **built)
        except (TypeError, ValueError, RuntimeError, IndexError) as err:
            raise ConfigError(f"`{key}`: {type(target).__name__} rejects {dict(args)}: {err}") from None


def check_scheduler_args(args: Mapping[str, Any], key: str = "scheduler.scheduler") -> None:
    """Epoch/step counts of a scheduler are integers >= 1 (``step_size=0`` divides by zero mid-epoch).

    Example:
        >>> check_scheduler_args({"step_size": 10, "gamma": 0.1})
    """
    for name, low in SCHEDULER_COUNTS.items():
        if name in args and args[name] is not None:
            check_int(f"{key}.{name}", args[name], low=low)
    if "gamma" in args and args["gamma"] is not None:
        check_range(f"{key}.gamma", args["gamma"], 0.0, None, low_inclusive=False)


def check_trainer_args(args: Mapping[str, Any], key: str = "trainer") -> None:
    """``max_epochs`` an int >= 1 (or -1 with ``max_steps``), ``gradient_clip_val`` None or >= 0.

    Example:
        >>> check_trainer_args({"max_epochs": 3, "gradient_clip_val": 1.0})
    """
    if "max_epochs" in args and args["max_epochs"] is not None:
        value = args["max_epochs"]
        check_int(f"{key}.max_epochs", value)
        if value == 0 or value < -1 or (value == -1 and (args.get("max_steps") in (None, -1))):
            raise ConfigError(f"`{key}.max_epochs` must be an integer >= 1 (or -1 with trainer.max_steps set); got "
                              f"{value!r}. max_epochs=0 would test untrained weights.")
    for name in ("min_epochs", "check_val_every_n_epoch", "accumulate_grad_batches", "log_every_n_steps"):
        if args.get(name) is not None:
            check_int(f"{key}.{name}", args[name], low=0 if name == "min_epochs" else (0 if name == "log_every_n_steps" else 1))
    clip = args.get("gradient_clip_val")
    if clip is not None:
        check_range(f"{key}.gradient_clip_val", clip, 0.0, None)


def check_seed(seed: Any) -> int:
    """The seed is an integer (``seed=abc`` or ``seed=1.5`` is not).

    Example:
        >>> check_seed(42)
        42
    """
    return check_int("seed", seed, low=0, high=2**32 - 1)


def check_monitored(names: Iterable[tuple[str, str]], logged: Iterable[str], when: str) -> None:
    """Every ``(option, metric)`` must be among ``logged``; else one error naming them all and what is logged.

    Example:
        >>> check_monitored([("callbacks.model_checkpoint.monitor", "val/acc")], ["val/acc", "val/loss"], "x")
    """
    logged = sorted(set(logged))
    missing = [(opt, m) for opt, m in names if m not in logged]
    if missing:
        import difflib

        parts = []
        for opt, m in missing:
            close = difflib.get_close_matches(m, logged, n=1)
            parts.append(f"`{opt}` = {m!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"{'; '.join(parts)}: not among the metrics logged {when}: {', '.join(logged) or 'none'}.")
