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
from lightning_reg.errors import ConfigError, check_choice, check_non_negative

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
    """One selected parameter with its (unscheduled) coefficients and its output-unit dimension.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ConvTranspose2d(1, 2, 3))
        >>> [(p.name, p.l2, p.unit_dim, tuple(p.param.shape)) for p in PenaltySpec(l2=1e-4).resolve(model)]
        [('0.weight', 0.0001, 0, (3, 4)), ('1.weight', 0.0001, 1, (1, 2, 3, 3))]
    """

    name: str
    param: nn.Parameter
    l1: float
    l2: float
    unit_dim: int = 0


def _check_groups(groups: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise ConfigError(
            "`groups` must map a parameter-name glob or module type to coefficients, e.g. "
            f"{{'head.*': {{'l2': 1e-3}}}}; got {groups!r}."
        )
    out: dict[str, dict[str, float]] = {}
    for key, coefs in groups.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"`groups` keys must be parameter-name globs or module type names; got {key!r}.")
        if not isinstance(coefs, Mapping) or not coefs or set(coefs) - {"l1", "l2"}:
            raise ConfigError(
                f"`groups[{key!r}]` must be a mapping with keys among 'l1', 'l2' (e.g. {{'l2': 1e-3}}); got {coefs!r}."
            )
        out[key] = {k: check_non_negative(f"groups[{key!r}].{k}", v) for k, v in coefs.items()}
    return out


class PenaltySpec:
    """Validated coefficients, selection and schedule; resolves to :class:`PenalizedParam` on a model.

    The effective coefficients at a step are ``base × schedule.at(step, epoch)``: the schedule is a
    multiplier (e.g. ``Linear(0, 1, end_at=1000)`` warms the penalty up from zero).

    Args:
        l1, l2: base coefficients (>= 0), Keras convention ``l1·Σ|w| + l2·Σw²``.
        include, exclude: selection (see the module docstring).
        groups: per-group overrides ``{glob or type name: {"l1": a, "l2": b}}``; the first matching key
            wins; a key that matches no selected parameter is an error (a typo otherwise goes unnoticed).
        schedule: multiplier schedule: a :class:`~lightning_reg.core.schedules.Schedule`, a number, a mapping
            ``{"name": "linear", ...}`` or a callable ``t -> float``; ``None`` means 1.
        embeddings: select the weights of ``nn.Embedding``/``EmbeddingBag`` layers (and heads tied to them).

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
        groups: Mapping[str, Mapping[str, float]] | None = None,
        schedule: ScheduleLike | None = None,
        embeddings: bool = True,
    ) -> None:
        if not isinstance(embeddings, bool):
            raise ConfigError(f"`embeddings` must be True or False; got {embeddings!r}.")
        self.embeddings = embeddings
        self.l1 = check_non_negative("l1", l1)
        self.l2 = check_non_negative("l2", l2)
        self.include = Selectors.parse("include", include)
        self.exclude = Selectors.parse("exclude", exclude)
        self.groups = _check_groups(groups)
        self._group_selectors: dict[str, Selectors] = {
            k: Selectors.parse(f"groups[{k!r}]", [k]) or Selectors() for k in self.groups
        }
        self.schedule: Schedule | None = None if schedule is None else as_schedule(schedule, "schedule")

    @property
    def any_l1(self) -> bool:
        return self.l1 > 0 or any(g.get("l1", 0.0) > 0 for g in self.groups.values())

    @property
    def any_l2(self) -> bool:
        return self.l2 > 0 or any(g.get("l2", 0.0) > 0 for g in self.groups.values())

    def scale_at(self, step: int, epoch: int) -> float:
        """The schedule multiplier at a trainer position (1.0 without a schedule)."""
        if self.schedule is None:
            return 1.0
        value = self.schedule.at(step, epoch)
        if not value >= 0.0:  # also catches NaN
            raise ConfigError(f"`schedule` must give values >= 0; it gave {value!r} at step {step}, epoch {epoch}.")
        return value

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
            l1, l2 = self.l1, self.l2
            for key, sel in self._group_selectors.items():
                if sel.matches(name, module, kernels_only_for_types=False, param=param):
                    l1 = self.groups[key].get("l1", l1)
                    l2 = self.groups[key].get("l2", l2)
                    used[key] += 1
                    break
            out.append(PenalizedParam(name, param, l1, l2, unit_dim(module)))
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
