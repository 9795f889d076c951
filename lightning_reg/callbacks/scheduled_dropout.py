"""ScheduledDropout: schedule the rate of every dropout-like module of any LightningModule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from typing_extensions import override

from lightning_reg._lightning_internals import callback_metrics_store
from lightning_reg.callbacks._state_key import memo_state_key
from lightning_reg.callbacks.log_helpers import log_due, log_to_loggers, warn_if_state_missing
from lightning_reg.core.dropout import (
    DROP_PROB,
    DROPOUT_TYPES,
    FLOAT_RATE_ATTRS,
    RATE_ATTRS,
    DropoutTarget,
    as_list,
    check_rates,
    depth_levels,
    depth_rates,
    find_dropout_modules,
    injected_kind,
    module_type_names,
    unscheduled_rates,
)
from lightning_reg.core.injection import check_inject_options, inject_dropout, injected_names
from lightning_reg.core.schedules import UNITS, ScheduleLike, as_schedule
from lightning_reg.errors import ConfigError, check_choice, check_int

__all__ = [
    "ScheduledDropout",
    "check_rates",
]


class ScheduledDropout(pl.Callback):
    """Set the rate of every dropout-like module from a schedule, before each optimizer step or epoch.

    Works on any LightningModule without changing its code. It targets ``nn.Dropout``,
    ``Dropout1d/2d/3d``, ``AlphaDropout``, ``FeatureAlphaDropout``, torchvision's ``StochasticDepth``
    and any module with a float ``drop_prob`` attribute (timm's ``DropPath``, ``DropBlock2d``), and the float
    attributes that Hugging Face models read at forward time and pass to the attention function
    (``attention_dropout`` and the others of :data:`lightning_reg.core.dropout.FLOAT_RATE_ATTRS`; targets named
    ``<module>.<attribute>``). What looks like a rate but is not scheduled (another float ``*drop*`` attribute, a
    ``config`` dropout field no module rate started from) is named in a ``UserWarning`` at fit start.
    Evaluation is untouched: a module in eval mode stays the identity whatever its rate.

    The rate is ``schedule.at(trainer.global_step, trainer.current_epoch)``: a pure function of the
    trainer's counters, so a resumed run continues the same sequence and all DDP ranks agree without
    communication. ``global_step`` counts optimizer steps, so under ``accumulate_grad_batches=k`` the
    ``k`` micro-batches of one optimizer step share one rate; under manual optimization it counts the
    ``optimizer.step()`` calls. The rate is logged as ``reg/dropout_p`` (before depth scaling): it is put in
    ``trainer.callback_metrics`` at every batch, where callbacks and ``metrics.json`` read it, and written to the
    loggers (rank zero) once per ``log_every_n_steps`` optimizer steps. ``pl_module.log`` would cost about half a
    millisecond on every step.

    Args:
        schedule: a :class:`~lightning_reg.core.schedules.Schedule`, a number (constant rate), a
            ``{"name": "early", "p": 0.1, "cutoff": 5, "unit": "epoch"}`` mapping, a ``{t: rate}`` mapping
            (piecewise constant, by epoch unless ``interval="step"``), or a callable of ``t``.
            Its values must lie in ``[0, 1)``.
        interval: ``"step"`` sets the rate at the start of every training batch (for the optimizer step
            that batch contributes to); ``"epoch"`` only at the start of every epoch. Default: the
            schedule's ``unit``.
        modules: narrow the targets to these types: types, class names (``"Dropout2d"``, ``"DropPath"``),
            ``"drop_prob"`` (any module with a float ``drop_prob``) or ``"rate_attrs"`` (the float rate
            attributes). Default: every dropout-like module and float rate attribute.
        names: narrow the targets to modules whose qualified name matches one of these globs
            (``"encoder.*"``).
        exclude: leave out modules whose qualified name matches one of these globs.
        depth_scale: scale the rate linearly with depth, ``rate · (l+1)/L`` for depth level ``l`` of ``L`` in
            model order (NASNet's ScheduledDropPath); the modules of one numbered block (``blocks.3``) share a
            level, so a transformer block's two drop-paths get one rate, as timm gives them.
        inject: add an ``nn.Dropout`` after every module of these types (``["ReLU"]``, ``["Linear"]``,
            ``["nn.GELU"]``, ``["mypkg.Block"]``) at ``setup``, before the optimizer is built. Parameter
            names and ``state_dict`` keys do not change (see :func:`lightning_reg.core.injection.inject_dropout`).
        inject_kind, inject_options: what ``inject`` adds, one of
            :data:`~lightning_reg.core.injection.INJECT_KINDS` (``"dropout"``, ``"gaussian_noise"``, ``"dropblock"``
            ...; docs/dropout.md), and its other arguments (``dropblock``: ``block_size``, ``gamma_scale``).
        inject_skip_last: do not inject after the last matching module (``inject=["Linear"]`` then skips the
            output layer).
        inject_if_absent: inject only if the model has no target module of its own; otherwise schedule
            the model's own dropout. The shipped Hydra configs use this, so they work on models with and
            without dropout.
        log_name: the logged metric name; ``None`` disables logging.
        log_every_n_steps: write the rate to the loggers at every this many optimizer steps (from step 0);
            ``None`` follows the trainer's ``log_every_n_steps``; ``0`` writes nothing to the loggers (the rate
            still goes into ``trainer.callback_metrics``), as in :class:`~lightning_reg.WeightPenalty`.
        verbose: log (on rank 0) which modules are scheduled and which were injected.

    Raises:
        ConfigError: a rate outside ``[0, 1)``, an unknown schedule name or ``interval``, an ``inject``
            type not in the model, or (without ``inject``) a model with no module to schedule.

    Example:
        >>> import lightning.pytorch as pl
        >>> from lightning_reg.core.schedules import Early
        >>> cb = ScheduledDropout(Early(p=0.1, cutoff=5, unit="epoch"))
        >>> cb.interval
        'epoch'
        >>> cb = ScheduledDropout({"name": "linear", "start": 0.0, "end": 0.2, "end_at": 1000},
        ...                       modules=["DropPath"], depth_scale=True)
        >>> trainer = pl.Trainer(callbacks=[cb], logger=False)
        >>> # a model with no dropout at all: add it after every ReLU
        >>> cb = ScheduledDropout(0.1, inject=["ReLU"])
    """

    def __init__(
        self,
        schedule: ScheduleLike,
        interval: str | None = None,
        modules: Sequence[str | type] | None = None,
        names: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
        depth_scale: bool = False,
        inject: Sequence[str | type] | str | None = None,
        inject_kind: str = "dropout",
        inject_options: Mapping[str, Any] | None = None,
        inject_skip_last: bool = False,
        inject_if_absent: bool = False,
        log_name: str | None = "reg/dropout_p",
        log_every_n_steps: int | None = None,
        verbose: bool = True,
    ) -> None:
        if interval is not None:
            check_choice("interval", interval, UNITS)
        int_keyed = (
            isinstance(schedule, Mapping)
            and bool(schedule)
            and all(isinstance(k, int) and not isinstance(k, bool) for k in schedule)
        )
        default_unit = interval or ("epoch" if int_keyed else "step")
        self.schedule = as_schedule(schedule, "schedule", unit=default_unit)
        self.interval: str = interval or self.schedule.unit
        check_rates(self.schedule)
        self.modules = as_list(modules, "modules")
        self.names = [str(g) for g in as_list(names, "names")]
        self.exclude = [str(g) for g in as_list(exclude, "exclude")]
        self.inject = as_list(inject, "inject")
        for option, entries in (("modules", self.modules), ("inject", self.inject)):
            for entry in entries:
                if not (isinstance(entry, str) and entry) and not (
                    isinstance(entry, type) and issubclass(entry, nn.Module)
                ):
                    raise ConfigError(
                        f"`{option}` entries must be module types or class names (e.g. 'ReLU', 'DropPath'); got {entry!r}."
                    )
        for option, value in (
            ("depth_scale", depth_scale),
            ("inject_skip_last", inject_skip_last),
            ("inject_if_absent", inject_if_absent),
            ("verbose", verbose),
        ):
            if not isinstance(value, bool):
                raise ConfigError(f"`{option}` must be True or False; got {value!r}.")
        if (inject_skip_last or inject_if_absent or inject_options or inject_kind != "dropout") and not self.inject:
            raise ConfigError(
                "`inject_skip_last`, `inject_if_absent`, `inject_kind` and `inject_options` only apply with `inject` "
                f"(e.g. inject=['ReLU']); got inject={inject!r}."
            )
        self.inject_options = check_inject_options(inject_kind, inject_options)
        self.inject_kind = inject_kind
        if log_name is not None and (not isinstance(log_name, str) or not log_name):
            raise ConfigError(f"`log_name` must be a non-empty string or None; got {log_name!r}.")
        self.depth_scale = depth_scale
        self.inject_skip_last = inject_skip_last
        self.inject_if_absent = inject_if_absent
        if log_every_n_steps is not None:
            check_int("log_every_n_steps", log_every_n_steps, low=0)
        self.log_name = log_name
        self.log_every_n_steps = log_every_n_steps
        self._last_logged_step = -1
        self.verbose = verbose
        self._targets: list[DropoutTarget] = []
        self._levels: list[int] = []
        self._injected: list[str] = []
        self._discovered = False
        self._rate: float | None = None
        self._rate_tensor: tuple[float, torch.Tensor] | None = None
        self._step: int | None = None
        self._epoch: int | None = None
        self._loaded: dict[str, Any] = {}

    @property
    @override
    def state_key(self) -> str:
        # Memoized: Lightning reads it at every hook call (see lightning_reg.callbacks._state_key).
        fingerprint = (
            self.schedule,
            tuple(vars(self.schedule).values()),
            self.interval,
            tuple(self.modules),
            tuple(self.names),
            tuple(self.exclude),
            self.depth_scale,
            tuple(self.inject),
            self.inject_kind,
        )
        return memo_state_key(
            self,
            fingerprint,
            lambda: self._generate_state_key(
                schedule=repr(self.schedule),
                interval=self.interval,
                modules=[m.__name__ if isinstance(m, type) else m for m in self.modules],
                names=self.names,
                exclude=self.exclude,
                depth_scale=self.depth_scale,
                inject=[m.__name__ if isinstance(m, type) else m for m in self.inject],
                # only when not the default, so that existing checkpoints keep their state key
                **({"inject_kind": self.inject_kind} if self.inject_kind != "dropout" else {}),
            ),
        )

    @property
    def target_names(self) -> list[str]:
        """Qualified names of the scheduled modules (known after ``setup``)."""
        return [t.name for t in self._targets]

    @property
    def injected(self) -> list[str]:
        """Qualified names of the dropout modules added by ``inject`` (known after ``setup``)."""
        return list(self._injected)

    @property
    def rate(self) -> float | None:
        """The rate set last (before depth scaling), or None before the first training batch."""
        return self._rate

    # -- discovery -----------------------------------------------------------------------------------

    def _describe_targets(self) -> str:
        if not self.modules:
            default = ", ".join(t.__name__ for t in DROPOUT_TYPES)
            return f"{default}, StochasticDepth and modules with a float `{DROP_PROB}`"
        return ", ".join(m.__name__ if isinstance(m, type) else str(m) for m in self.modules)

    def _find(self, pl_module: pl.LightningModule) -> list[DropoutTarget]:
        # Another instance's injected modules (another kind) are that instance's to schedule.
        found = find_dropout_modules(pl_module, self.modules, self.names, self.exclude)
        return [t for t in found if not self.inject or injected_kind(t.module) in (None, self.inject_kind)]

    def _discover(self, pl_module: pl.LightningModule) -> None:
        own = self._find(pl_module)
        if self.inject:
            if self.inject_if_absent and own:
                if self.verbose:
                    rank_zero_info(
                        f"ScheduledDropout: {type(pl_module).__name__} has its own dropout modules "
                        f"({', '.join(t.name for t in own)}); inject={self._inject_label()} is not used "
                        "(inject_if_absent=True)."
                    )
            else:
                first = self.schedule.at(0, 0)
                options = (self.inject_skip_last, self.inject_kind, self.inject_options)
                added = inject_dropout(pl_module, self.inject, first, *options)
                if self.verbose and added:
                    rank_zero_info(
                        f"ScheduledDropout: injected {'nn.Dropout' if self.inject_kind == 'dropout' else self.inject_kind} after {len(added)} module(s) of type "
                        f"{self._inject_label()}{' (skipping the last)' if self.inject_skip_last else ''}: "
                        f"{', '.join(n.rsplit('.', 1)[0] for n in added)}. Parameter names, state_dict keys "
                        "and the optimizer are unchanged."
                    )
        self._injected = injected_names(pl_module, self.inject_kind if self.inject else None)
        self._targets = self._find(pl_module)
        self._levels = depth_levels([t.name for t in self._targets])
        if not self._targets:
            narrowed = ""
            if self.names or self.exclude:
                narrowed = f" with names matching {self.names or ['*']} and not {self.exclude}"
            raise ConfigError(
                f"ScheduledDropout found no module to schedule in {type(pl_module).__name__}: `modules` selects "
                f"{self._describe_targets()}{narrowed}, and the model has none. Its module types are: "
                f"{', '.join(module_type_names(pl_module)) or '(none)'}. Pass `inject` to add dropout, e.g. "
                "inject=['ReLU'] (after every ReLU) or inject=['Linear'] with inject_skip_last=True, "
                "or widen `modules`/`names`."
            )
        self._discovered = True
        # Never silently leave a rate the model reads at forward time at its initial value.
        left = unscheduled_rates(pl_module, self._targets)
        if left:
            rank_zero_warn(
                f"ScheduledDropout: these look like drop rates but are not scheduled: {', '.join(left)}. Float "
                f"attributes it schedules are {', '.join(FLOAT_RATE_ATTRS)} (add the owning module type or "
                f"'{RATE_ATTRS}' to `modules` if `modules` is narrowed); other floats and config fields read at "
                "forward time keep their value. If the model reads one of them at forward time, its rate is not "
                "the schedule's.",
                category=UserWarning,
            )
        if self.verbose:
            scale = " with depth scaling (l+1)/L" if self.depth_scale else ""
            rank_zero_info(
                f"ScheduledDropout: scheduling {len(self._targets)} module(s){scale} with {self.schedule!r} "
                f"every {self.interval}: {', '.join(self.target_names)}."
            )

    def _inject_label(self) -> str:
        return "[" + ", ".join(m.__name__ if isinstance(m, type) else str(m) for m in self.inject) + "]"

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._discovered = False  # the same callback may fit another model
        # A model that builds its layers in `configure_model` has none yet: discover at on_fit_start.
        if is_overridden("configure_model", pl_module):
            return
        self._discover(pl_module)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._discovered:
            self._discover(pl_module)
        self._check_not_shared(trainer)
        loaded = self._loaded.get("injected")
        if loaded is not None and list(loaded) != self._injected:
            rank_zero_warn(
                f"ScheduledDropout: the checkpoint was trained with injected dropout at {loaded}, this run injects "
                f"at {self._injected}. The rate sequence continues, but the model's dropout layout differs."
            )
        horizon, source = self._horizon(trainer)
        if horizon is None or horizon <= 0:
            return
        check_rates(self.schedule, horizon - 1)
        unit = self.schedule.unit
        for option, value, needed in self.schedule.key_points():
            if needed >= horizon:
                rank_zero_warn(
                    f"ScheduledDropout: the schedule's `{option}`={value} ({unit}s) lies beyond the end of "
                    f"training: this run has {horizon} {unit}s ({source}; indices 0..{horizon - 1}), so "
                    f"`{option}`={value} never takes effect in {self.schedule!r}. Lower `{option}` or train longer.",
                    category=UserWarning,
                )

    def _horizon(self, trainer: pl.Trainer) -> tuple[int | None, str]:
        if self.schedule.unit == "step":
            total = trainer.estimated_stepping_batches
            if not math.isfinite(total):
                return None, ""
            return int(total), "trainer.estimated_stepping_batches"
        epochs = trainer.max_epochs
        if epochs is None or epochs < 0:
            return None, ""
        return int(epochs), f"max_epochs={epochs}"

    def _check_not_shared(self, trainer: pl.Trainer) -> None:
        """Two schedulers driving the same rate would silently leave only the later one's: refuse it."""
        mine = {(id(t.module), t.attr): t.name for t in self._targets}
        for other in getattr(trainer, "callbacks", []):  # a property Lightning types loosely
            if other is self or not isinstance(other, ScheduledDropout) or not other._targets:
                continue
            shared = [mine[key] for key in ((id(t.module), t.attr) for t in other._targets) if key in mine]
            if shared:
                raise ConfigError(
                    f"two dropout schedulers drive the same modules, so only the later one would take effect: "
                    f"{other.state_key} and {self.state_key} both schedule {', '.join(shared[:4])}"
                    f"{f' (and {len(shared) - 4} more)' if len(shared) > 4 else ''}. Keep one, or split the modules "
                    "between them with `names`/`exclude`."
                )

    def _apply(self, trainer: pl.Trainer) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        rate = self.schedule.at(step, epoch)
        if not (0.0 <= rate < 1.0):
            raise ConfigError(
                f"`schedule` must give drop rates in [0, 1); {self.schedule!r} gave {rate!r} at step {step}, epoch {epoch}."
            )
        for target, r in zip(self._targets, depth_rates(rate, self._levels, self.depth_scale)):
            target.set(r)
        self._rate, self._step, self._epoch = rate, step, epoch

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval == "epoch":
            self._apply(trainer)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.interval == "step" or self._rate is None:
            self._apply(trainer)
        if self.log_name:
            self._publish(trainer)

    def _publish(self, trainer: pl.Trainer) -> None:
        assert self.log_name is not None and self._rate is not None
        # One tensor per rate value, not per step (a constant or piecewise schedule repeats it).
        cached = self._rate_tensor
        if cached is None or cached[0] != self._rate:
            cached = self._rate_tensor = (self._rate, torch.tensor(self._rate))
        callback_metrics_store(trainer)[self.log_name] = cached[1]
        # Once per optimizer step, also under gradient accumulation.
        if log_due(trainer, self.log_every_n_steps, self._last_logged_step, at_zero=True):
            self._last_logged_step = trainer.global_step
            log_to_loggers(trainer, {self.log_name: self._rate})

    # -- state ---------------------------------------------------------------------------------------

    @override
    def state_dict(self) -> dict[str, Any]:
        # Informational: the rate is recomputed from global_step/epoch on resume.
        return {
            "rate": self._rate,
            "step": self._step,
            "epoch": self._epoch,
            "modules": self.target_names,
            "injected": list(self._injected),
            "last_logged_step": self._last_logged_step,
        }

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        warn_if_state_missing(
            self,
            trainer,
            checkpoint,
            "the rate is a pure function of the trainer's step and epoch, so the schedule continues from the resumed position.",
        )

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = dict(state_dict)
        self._last_logged_step = int(state_dict.get("last_logged_step", -1))

    def run_summary(self) -> dict[str, Any]:
        """What ``metrics.json`` records: the schedule, the final rate and the modules touched."""
        return {
            "schedule": repr(self.schedule),
            "interval": self.interval,
            "depth_scale": self.depth_scale,
            "final_rate": self._rate,
            "final_step": self._step,
            "final_epoch": self._epoch,
            "n_modules": len(self._targets),
            "modules": self.target_names,
            "injected": list(self._injected),
            "module_rates": {t.name: t.get() for t in self._targets},
        }
