"""Weight penalties and constraints as pure functions: parameter selection, values, in-place updates.

Convention (Keras'): the penalty is ``l1·Σ|w| + l2·Σw²`` (no ½ factor), so its gradient is
``l1·sign(w) + 2·l2·w``. Everything here works on plain ``nn.Module``/tensor lists and knows nothing
about Lightning; :class:`~lightning_reg.callbacks.WeightPenalty`, :class:`~lightning_reg.callbacks.MaxNorm`
and :class:`~lightning_reg.PenaltyLossMixin` are thin layers over it.

Parameter selection (``include``, ``exclude``, ``embeddings``, ``no_weight_decay()``) is in
:mod:`lightning_reg.core.selection`, the math on tensor lists (values, norms, in-place updates) in
:mod:`lightning_reg.core.penalty_math`; their names are re-exported here.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    >>> [name for name, _, _ in select_parameters(model)]
    ['0.weight', '2.weight']
    >>> [name for name, _, _ in select_parameters(model, include=["*.weight"], exclude=["LayerNorm"])]
    ['0.weight', '2.weight']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from lightning_reg.core.penalty_math import (
    TensorList,
    add_penalty_grad_,
    count_zeros,
    decoupled_step_,
    l1_norm,
    max_norm_,
    max_norm_inplace,
    penalty_grad_inplace,
    penalty_value,
    soft_threshold_,
    sq_l2_norm,
)
from lightning_reg.core.penalty_rules import Coupled, PenaltyRule
from lightning_reg.core.schedules import Schedule, ScheduleLike, as_schedule
from lightning_reg.core.selection import (
    EMBEDDING_TYPES,
    KERNEL_TYPES,
    NORM_TYPES,
    Selector,
    Selectors,
    describe_parameters,
    no_weight_decay_patterns,
    owned_parameters,
    select_parameters,
    selection_summary,
    unit_dim,
)
from lightning_reg.errors import ConfigError, check_choice

__all__ = [
    "EMBEDDING_TYPES",
    "KERNEL_TYPES",
    "MODES",
    "NORM_TYPES",
    "PenalizedParam",
    "PenaltySpec",
    "ScheduleLike",
    "Selector",
    "Selectors",
    "TensorList",
    "add_penalty_grad_",
    "check_mode",
    "count_zeros",
    "decoupled_step_",
    "describe_parameters",
    "l1_norm",
    "max_norm_",
    "max_norm_inplace",
    "no_weight_decay_patterns",
    "owned_parameters",
    "penalty_grad_inplace",
    "penalty_value",
    "select_parameters",
    "selection_summary",
    "soft_threshold_",
    "sq_l2_norm",
    "unit_dim",
]

MODES = ("gradient", "proximal", "decoupled")


# --------------------------------------------------------------------------------------------------
# Coefficients: a validated spec shared by the callback and the mixin
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PenalizedParam:
    """One selected parameter with its rule (the base rule, or its group's) and its output-unit dimension.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ConvTranspose2d(1, 2, 3))
        >>> [(p.name, p.l2, p.unit_dim, tuple(p.param.shape)) for p in PenaltySpec(l2=1e-4).resolve(model)]
        [('0.weight', 0.0001, 0, (3, 4)), ('1.weight', 0.0001, 1, (1, 2, 3, 3))]
    """

    name: str
    param: nn.Parameter
    rule: PenaltyRule
    unit_dim: int = 0

    @property
    def l1(self) -> float:
        """The rule's (unscheduled) L1 coefficient; 0 for a rule without one."""
        return float(getattr(self.rule, "l1", 0.0))

    @property
    def l2(self) -> float:
        """The rule's (unscheduled) L2 coefficient; 0 for a rule without one."""
        return float(getattr(self.rule, "l2", 0.0))


def _check_groups(groups: Mapping[str, Mapping[str, Any]] | None, rule: PenaltyRule) -> dict[str, PenaltyRule]:
    """Each group's rule: the base ``rule`` with the group's arguments, checked by the rule."""
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise ConfigError(
            "`groups` must map a parameter-name glob or module type to coefficients, e.g. "
            f"{{'head.*': {rule.group_example}}}; got {groups!r}."
        )
    out: dict[str, PenaltyRule] = {}
    for key, coefs in groups.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"`groups` keys must be parameter-name globs or module type names; got {key!r}.")
        out[key] = rule.replace(key, coefs)
    return out


class PenaltySpec:
    """A validated rule, selection, per-group rules and schedule; resolves to :class:`PenalizedParam` on a model.

    The rule acts at ``scale = schedule.at(step, epoch)``: the schedule is a multiplier of its coefficients
    (e.g. ``Linear(0, 1, end_at=1000)`` warms the penalty up from zero).

    Args:
        l1, l2: base coefficients (>= 0), Keras convention ``l1·Σ|w| + l2·Σw²``, of the default rule.
        include, exclude: selection (see :mod:`lightning_reg.core.selection`).
        groups: per-group arguments ``{glob or type name: {"l1": a, "l2": b}}`` (the rule's arguments); the first
            matching key wins; a key that matches no selected parameter is an error (a typo otherwise goes
            unnoticed).
        schedule: multiplier schedule: a :class:`~lightning_reg.core.schedules.Schedule`, a number, a mapping
            ``{"name": "linear", ...}`` or a callable ``t -> float``; ``None`` means 1.
        embeddings: select the weights of ``nn.Embedding``/``EmbeddingBag`` layers (and heads tied to them).
        rule: the rule: a :class:`~lightning_reg.core.penalty_rules.PenaltyRule`, or a rule class built with
            ``l1`` and ``l2``; ``None`` is :class:`~lightning_reg.core.penalty_rules.Coupled` (the gradient).
        bias: the biases' own arguments (``{"l2": 1e-3}``): the ``bias`` of every module that owns a selected
            kernel is then penalized too, by the base rule with these arguments (Keras' ``bias_regularizer``).
            ``None`` (the default) leaves biases out. ``groups`` apply to kernels only.

    Example:
        >>> from torch import nn
        >>> spec = PenaltySpec(l2=1e-4, groups={"1.*": {"l2": 1e-3}})
        >>> [(p.name, p.l2) for p in spec.resolve(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))]
        [('0.weight', 0.0001), ('1.weight', 0.001)]
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        include: Sequence[Selector] | None = None,
        exclude: Sequence[Selector] | None = None,
        groups: Mapping[str, Mapping[str, Any]] | None = None,
        schedule: ScheduleLike | None = None,
        embeddings: bool = True,
        rule: PenaltyRule | type[PenaltyRule] | None = None,
        bias: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(embeddings, bool):
            raise ConfigError(f"`embeddings` must be True or False; got {embeddings!r}.")
        self.embeddings = embeddings
        if rule is None or isinstance(rule, type):
            self.rule: PenaltyRule = (rule or Coupled)(l1=l1, l2=l2)  # type: ignore[call-arg]
        else:
            self.rule = rule
        self.include = Selectors.parse("include", include)
        self.exclude = Selectors.parse("exclude", exclude)
        self.group_rules = _check_groups(groups, self.rule)
        #: The groups' checked arguments (plain values, as given).
        given: Mapping[str, Mapping[str, Any]] = groups or {}
        self.groups: dict[str, dict[str, Any]] = {
            k: {a: getattr(r, a) for a in given[k]} for k, r in self.group_rules.items()
        }
        self._group_selectors: dict[str, Selectors] = {
            k: Selectors.parse(f"groups[{k!r}]", [k]) or Selectors() for k in self.groups
        }
        self.schedule: Schedule | None = None if schedule is None else as_schedule(schedule, "schedule")
        #: The biases' rule: the base rule with the arguments of ``bias`` (None: biases are left out).
        self.bias_rule: PenaltyRule | None = None if bias is None else self.rule.replace("bias", bias, option="bias")
        self.bias: dict[str, Any] | None = (
            None if bias is None or self.bias_rule is None else {a: getattr(self.bias_rule, a) for a in bias}
        )
        self.rule.check_variants(self.variants)

    @property
    def variants(self) -> list[PenaltyRule]:
        """The base rule, then each group's rule, then the biases'."""
        return [self.rule, *self.group_rules.values(), *([self.bias_rule] if self.bias_rule is not None else [])]

    @property
    def l1(self) -> float:
        return float(getattr(self.rule, "l1", 0.0))

    @property
    def l2(self) -> float:
        return float(getattr(self.rule, "l2", 0.0))

    @property
    def any_l1(self) -> bool:
        return any(getattr(r, "l1", 0.0) > 0 for r in self.variants)

    @property
    def any_l2(self) -> bool:
        return any(getattr(r, "l2", 0.0) > 0 for r in self.variants)

    def scale_at(self, step: int, epoch: int) -> float:
        """The schedule multiplier at a trainer position (1.0 without a schedule)."""
        if self.schedule is None:
            return 1.0
        value = self.schedule.at(step, epoch)
        if not value >= 0.0:  # also catches NaN
            raise ConfigError(f"`schedule` must give values >= 0; it gave {value!r} at step {step}, epoch {epoch}.")
        return value

    def _biases(self, model: nn.Module, chosen: list[tuple[str, nn.Parameter, nn.Module]]) -> list[PenalizedParam]:
        """The ``bias`` of every module that owns a selected kernel, with :attr:`bias_rule` (Keras' ``bias_regularizer``
        beside its ``kernel_regularizer``)."""
        assert self.bias_rule is not None
        owners = {id(m) for _, _, m in chosen}
        taken = {id(p) for _, p, _ in chosen}
        return [
            PenalizedParam(name, param, self.bias_rule, 0)
            for name, param, module in owned_parameters(model)
            if id(module) in owners and name.rpartition(".")[2] == "bias" and id(param) not in taken
        ]

    def resolve(self, model: nn.Module, owner: str = "WeightPenalty") -> list[PenalizedParam]:
        """Select parameters and attach coefficients; raises :class:`ConfigError` if nothing matches."""
        chosen = select_parameters(model, self.include, self.exclude, embeddings=self.embeddings)
        if not chosen:
            rule = (
                f"include={self.include.entries()}"
                if self.include is not None
                else "the default (kernels of Linear/Conv/Embedding/attention/RNN layers)"
            )
            if self.exclude is not None:
                rule += f", exclude={self.exclude.entries()}"
            raise ConfigError(
                f"{owner}: the parameter selection ({rule}) matches no parameter of {type(model).__name__}. "
                f"Its trainable parameters are: {describe_parameters(model)}. "
                "Set `include` to module types (e.g. 'Linear') or parameter-name globs (e.g. 'net.*.weight')."
            )
        used: Counter[str] = Counter()
        out = []
        for name, param, module in chosen:
            own = self.rule
            for key, sel in self._group_selectors.items():
                if sel.matches(name, module, kernels_only_for_types=False, param=param):
                    own = self.group_rules[key]
                    used[key] += 1
                    break
            out.append(PenalizedParam(name, param, own, unit_dim(module)))
        if self.bias_rule is not None:
            out += self._biases(model, chosen)
        unused = [k for k in self.groups if not used[k]]
        if unused:
            raise ConfigError(
                f"{owner}: `groups` key(s) {unused} match no selected parameter. Selected parameters: "
                f"{', '.join(n for n, _, _ in chosen)}."
            )
        return out


def check_mode(mode: str) -> str:
    """Validate ``mode`` (one of :data:`MODES`)."""
    return check_choice("mode", mode, MODES)


# The Keras constraints and regularizer register themselves as rules (they import penalty_rules, not this module).
from lightning_reg.core import keras_rules as _keras_rules  # noqa: E402, F401
