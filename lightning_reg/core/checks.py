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

__all__ = [
    "check_monitored",
    "check_optimizer_args",
    "check_resume_checkpoint",
    "check_scheduler_args",
    "check_seed",
    "check_trainer_args",
]

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

    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in args:
        if params and name not in params and not takes_kwargs:
            allowed = [p for p in params if p not in ("params", "self")]
            raise ConfigError(
                f"`{key}.{name}` is not an argument of {getattr(target, '__name__', target)}; "
                f"allowed: {', '.join(allowed)}; got {name}={args[name]!r}."
            )
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
            raise ConfigError(
                f"`{key}.max_epochs` must be an integer >= 1 (or -1 with trainer.max_steps set); got "
                f"{value!r}. max_epochs=0 would test untrained weights."
            )
    for name in ("min_epochs", "check_val_every_n_epoch", "accumulate_grad_batches", "log_every_n_steps"):
        if args.get(name) is not None:
            check_int(
                f"{key}.{name}",
                args[name],
                low=0 if name == "min_epochs" else (0 if name == "log_every_n_steps" else 1),
            )
    clip = args.get("gradient_clip_val")
    if clip is not None:
        check_range(f"{key}.gradient_clip_val", clip, 0.0, None)
    accelerator = str(args.get("accelerator") or "").lower()
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"`{key}.accelerator` is {args['accelerator']!r} but no CUDA device is visible here "
                "(torch.cuda.is_available() is False). Use trainer=cpu (or trainer.accelerator=cpu), or run on a "
                "machine with a GPU."
            )


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


def check_resume_checkpoint(path: Any, model: Any) -> None:
    """Check, before fitting, that ``path`` is a Lightning checkpoint this ``model`` and its optimizer can resume.

    Read weights-only (nothing pickled in the file runs). Raises :class:`ConfigError` for a file that is not a
    checkpoint, one of another architecture (the first mismatched keys and shapes), and one whose optimizer
    state belongs to another optimizer (say Adam's state for ``optimizer=sgd``, which would fail mid-step).

    Example:
        >>> import tempfile, os, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "x.ckpt")
        >>> torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
        >>> check_resume_checkpoint(path, torch.nn.Linear(2, 1))
        Traceback (most recent call last):
        ...
        lightning_reg.errors.ConfigError: `ckpt_path` ... holds a different architecture: ...
    """
    import pickle
    import zipfile

    import torch

    from lightning_reg.safe_load import load_checkpoint_tensors

    try:
        ckpt = load_checkpoint_tensors(path)
    except ConfigError as err:
        raise ConfigError(f"`ckpt_path`: {err}") from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"`ckpt_path` {str(path)!r} is not a readable checkpoint (corrupt, truncated or another "
            f"kind of file): {type(err).__name__}: {first[:200]}"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(
            f"`ckpt_path` {str(path)!r} is not a Lightning checkpoint: it has no `state_dict` (found {keys})."
        )
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    shapes = [f"{k}: checkpoint {theirs[k]} vs model {ours[k]}" for k in ours if k in theirs and theirs[k] != ours[k]]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shapes differ: " + "; ".join(shapes[:3]))
        if missing:
            parts.append("missing in the checkpoint: " + ", ".join(missing[:3]))
        if unexpected:
            parts.append("not in the model: " + ", ".join(unexpected[:3]))
        raise ConfigError(
            f"`ckpt_path` {str(path)!r} holds a different architecture: {'; '.join(parts)}. Resume "
            "with the model config that wrote it (see its run's .hydra/config.yaml)."
        )
    states = ckpt.get("optimizer_states") or []
    try:
        configured = model.configure_optimizers()
    except Exception:  # noqa: BLE001 - a user's configure_optimizers may need the trainer: nothing to compare
        return
    optimizers = [o for o in _optimizers_of(configured) if isinstance(o, torch.optim.Optimizer)]
    for i, (state, opt) in enumerate(zip(states, optimizers)):
        groups = state.get("param_groups") if isinstance(state, dict) else None
        if not groups:
            continue
        need = set(opt.defaults) - {
            "differentiable",
            "foreach",
            "fused",
            "capturable",
            "maximize",
            "decoupled_weight_decay",
        }
        have = set(groups[0])
        lacking = sorted(need - have)
        if lacking:
            raise ConfigError(
                f"`ckpt_path` {str(path)!r}: its optimizer {i} state is not {type(opt).__name__}'s: it lacks "
                f"{', '.join(lacking)} (it has {', '.join(sorted(have - {'params'})[:8])}). Resume with the optimizer "
                "that wrote it (e.g. optimizer=adam), or start a new run from its weights."
            )


def _optimizers_of(configured: Any) -> list[Any]:
    import torch

    if isinstance(configured, torch.optim.Optimizer):
        return [configured]
    if isinstance(configured, dict):
        return [configured.get("optimizer")]
    if isinstance(configured, (list, tuple)):
        out: list[Any] = []
        for item in configured:
            if isinstance(item, (list, tuple)):
                out += [o for o in item if isinstance(o, torch.optim.Optimizer)]
            else:
                out += _optimizers_of(item)
        return out
    return []
