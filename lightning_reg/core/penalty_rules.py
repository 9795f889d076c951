"""Penalties and constraints as rule objects: each with its arguments, its own checks and its math.

A rule says what happens to the selected parameters of one optimizer param group (a :class:`Bucket`) at each
optimizer step, as the early-stopping criteria of :mod:`lightning_reg.core.stopping` say when to stop:

- :meth:`PenaltyRule.grad_`: before the step, add the penalty's gradient to ``param.grad`` (coupled penalties);
- :meth:`PenaltyRule.after_step_`: after the step, change the weights (a proximal map, a decoupled decay, a
  constraint's projection);
- :meth:`PenaltyRule.value`: the differentiable penalty, for a loss (:class:`~lightning_reg.PenaltyLossMixin`);
- :meth:`PenaltyRule.stats` and :meth:`PenaltyRule.report`: the values logged.

Rules are frozen dataclasses: rules with equal arguments are equal (the callbacks group parameters into one fused
call per rule and param group), and ``groups`` give a parameter group its own rule, the base rule with some
arguments replaced (:meth:`PenaltyRule.replace`), checked again. A subclass with a ``name`` registers itself in
:data:`RULES`. A new penalty is one subclass (and one yaml that passes it to
:class:`~lightning_reg.WeightPenalty` as ``rule=``).

Example:
    >>> rule = Coupled(l1=0.5, l2=0.25)
    >>> w = torch.tensor([1.0, -2.0, 0.0]); w.grad = torch.zeros(3)
    >>> rule.grad_(Bucket({}, rule, params=[w], dims=[0]), scale=1.0); w.grad.tolist()  # l1·sign(w) + 2·l2·w
    [1.0, -1.5, 0.0]
    >>> rule.replace("head.*", {"l2": 1e-3})
    Coupled(l1=0.5, l2=0.001)
    >>> rule_class("max_norm")(max_norm=3.0)
    MaxNorm(max_norm=3.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from typing_extensions import override

from lightning_reg.core.penalty_math import (
    count_zeros,
    decoupled_step_,
    l1_norm,
    max_norm_inplace,
    penalty_grad_inplace,
    penalty_value,
    soft_threshold_,
    sq_l2_norm,
)
from lightning_reg.errors import ConfigError, check_non_negative, check_range

__all__ = [
    "RULES",
    "Bucket",
    "Coupled",
    "Decoupled",
    "ElasticRule",
    "MaxNorm",
    "PenaltyRule",
    "Proximal",
    "make_rule",
    "rule_class",
    "unit_norms",
    "with_grads",
]

_REGISTRY: dict[str, type[PenaltyRule]] = {}

#: Steps a kernel skips MaxNorm's "all units inside?" check after a check found units outside.
RECHECK_EVERY = 8


@dataclass
class Bucket:
    """The parameters of one optimizer param group that share a rule (one fused call per step).

    ``dims`` holds each parameter's output-unit dimension (for the constraints), ``state`` what a rule keeps
    between steps for this bucket (it is rebuilt at each fit start), ``owner`` names the callback in errors.
    """

    group: dict[str, Any]
    rule: PenaltyRule
    owner: str = "WeightPenalty"
    params: list[Tensor] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)
    state: dict[int, Any] = field(default_factory=dict)

    def lr(self) -> float:
        """The param group's learning rate at this step (schedulers are followed)."""
        if "lr" not in self.group:
            raise ConfigError(
                f"{self.owner} needs the learning rate of each optimizer param group (it reads `param_group['lr']`); "
                f"this optimizer's param group has keys {sorted(self.group)}. Use mode='gradient' instead."
            )
        return float(self.group["lr"])


def with_grads(params: Sequence[Tensor]) -> tuple[Sequence[Tensor], list[Tensor]]:
    """The parameters that have a gradient, and their gradients (read at every step: ``zero_grad(set_to_none=True)``
    gives new gradient tensors)."""
    maybe_grads = [p.grad for p in params]
    grads = [g for g in maybe_grads if g is not None]
    if len(grads) == len(maybe_grads):
        return params, grads
    return [p for p, g in zip(params, maybe_grads) if g is not None], grads


@torch.no_grad()
def unit_norms(param: Tensor, dim: int) -> Tensor:
    """The L2 norm of each output unit's incoming weights (every slice along ``dim``), in float32."""
    if param.ndim < 2:
        return param.abs().float()
    other = tuple(d for d in range(param.ndim) if d != dim)
    return torch.linalg.vector_norm(param.float(), dim=other)


@dataclass(frozen=True)
class PenaltyRule:
    """One penalty or constraint: its arguments (the dataclass fields), their checks and its math.

    Subclasses set :attr:`name` (the registry key, and ``WeightPenalty``'s ``mode`` for the L1/L2 rules), declare
    their arguments as fields, check them in :meth:`checked`, and override the hooks they need; the defaults do
    nothing. The callbacks call the hooks under ``torch.no_grad()``.
    """

    #: Registry name (:data:`RULES`).
    name: ClassVar[str] = ""
    #: Whether :meth:`grad_` may change gradients (then an optimizer step must pass Lightning's
    #: ``on_before_optimizer_step``, or the penalty would be missed).
    uses_grad: ClassVar[bool] = False
    #: Whether :meth:`after_step_` changes the weights after the optimizer step.
    uses_after_step: ClassVar[bool] = False
    #: An example ``groups`` value, for messages.
    group_example: ClassVar[str] = "{}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _REGISTRY[cls.name] = cls

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in type(self).checked("", values).items():
            object.__setattr__(self, key, value)

    # ------------------------------------------------------------------------------------ arguments
    @classmethod
    def arguments(cls) -> tuple[str, ...]:
        """The rule's arguments, in order (what ``groups`` may override)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check and normalize some of the arguments; ``prefix`` goes before each name in messages."""
        return dict(values)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.arguments()}

    def replace(self, key: str, overrides: Any, option: str | None = None) -> PenaltyRule:
        """This rule with the arguments of ``groups[key]`` (or of ``option``) replaced, checked under that name."""
        names = self.arguments()
        where = option if option is not None else f"groups[{key!r}]"
        if not isinstance(overrides, Mapping) or not overrides or set(overrides) - set(names):
            raise ConfigError(
                f"`{where}` must be a mapping with keys among {', '.join(map(repr, names))} "
                f"(e.g. {self.group_example}); got {overrides!r}."
            )
        return dataclasses.replace(self, **type(self).checked(f"{where}.", overrides))

    def check_variants(self, variants: Sequence[PenaltyRule]) -> None:
        """Checks over the base rule and the groups' rules together (``variants``, base first)."""

    def does_nothing(self, variants: Sequence[PenaltyRule]) -> bool:
        """Whether these rules cannot change anything (the callback warns)."""
        return False

    def needs_grad(self, variants: Sequence[PenaltyRule]) -> bool:
        """Whether some variant changes gradients (an optimizer step that skipped Lightning's hook is an error)."""
        return False

    # ------------------------------------------------------------------------------------ math
    def grad_(self, bucket: Bucket, scale: float) -> None:
        """Before the optimizer step: add the penalty's gradient (times ``scale``) to the bucket's ``param.grad``."""

    def after_step_(self, bucket: Bucket, scale: float) -> None:
        """After the optimizer step: change the bucket's weights in place."""

    def value(self, params: Sequence[Tensor], scale: float, dims: Sequence[int] | None = None) -> Tensor:
        """The differentiable penalty (times ``scale``), for a loss; constraints have none. ``dims``: each
        parameter's output-unit dimension (default 0)."""
        raise ConfigError(f"{type(self).__name__} is a constraint: it has no penalty value to add to a loss.")

    def stats(self, bucket: Bucket) -> dict[str, float]:
        """The bucket's share of the logged values (combined by :meth:`report`)."""
        return {}

    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        """The logged values (``reg/...``) from every bucket's :meth:`stats`."""
        return {}


# ---------------------------------------------------------------------------------------------- L1 / L2 penalties


@dataclass(frozen=True)
class ElasticRule(PenaltyRule):
    """``l1·Σ|w| + l2·Σw²`` (Keras' convention: no ½), applied by a subclass in its own way."""

    l1: float = 0.0
    l2: float = 0.0
    group_example: ClassVar[str] = "{'l2': 1e-3}"

    @classmethod
    @override
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: check_non_negative(prefix + k, v) for k, v in values.items()}

    @override
    def does_nothing(self, variants: Sequence[PenaltyRule]) -> bool:
        return not any(getattr(r, "l1", 0.0) > 0 or getattr(r, "l2", 0.0) > 0 for r in variants)

    @override
    def value(self, params: Sequence[Tensor], scale: float, dims: Sequence[int] | None = None) -> Tensor:
        return penalty_value(params, params, self.l1 * scale, self.l2 * scale)

    @override
    def stats(self, bucket: Bucket) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.l1 > 0:
            out["l1"] = self.l1 * float(l1_norm(bucket.params))
            out["l1_zero"] = count_zeros(bucket.params)
            out["l1_numel"] = sum(p.numel() for p in bucket.params)
        if self.l2 > 0:
            out["l2"] = self.l2 * float(sq_l2_norm(bucket.params))
        return out

    @override
    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        out: dict[str, float] = {}
        l1_zero = l1_numel = 0
        l1_total = l2_total = 0.0
        for s in stats:
            if "l1" in s:
                l1_total += s["l1"]
                l1_zero += int(s["l1_zero"])
                l1_numel += int(s["l1_numel"])
            if "l2" in s:
                l2_total += s["l2"]
        if any(getattr(r, "l1", 0.0) > 0 for r in variants):
            out["reg/l1"] = scale * l1_total
            out["reg/l1_zero_frac"] = l1_zero / max(1, l1_numel)
        if any(getattr(r, "l2", 0.0) > 0 for r in variants):
            out["reg/l2"] = scale * l2_total
        return out


@dataclass(frozen=True)
class Coupled(ElasticRule):
    """The penalty's gradient ``l1·sign(w) + 2·l2·w`` added to ``param.grad`` before the optimizer step, as a
    penalty in the loss would (momentum and Adam's scaling see it)."""

    name: ClassVar[str] = "gradient"
    uses_grad: ClassVar[bool] = True

    @override
    def needs_grad(self, variants: Sequence[PenaltyRule]) -> bool:
        return True

    @override
    def grad_(self, bucket: Bucket, scale: float) -> None:
        l1, l2 = self.l1 * scale, self.l2 * scale
        if l1 == 0.0 and l2 == 0.0:
            return
        with_grad, grads = with_grads(bucket.params)
        penalty_grad_inplace(list(with_grad), grads, l1, l2)


@dataclass(frozen=True)
class Proximal(ElasticRule):
    """L1 by its proximal map after the step, ``w ← sign(w)·max(|w| − lr·l1, 0)`` (exact zeros); L2 in the gradient."""

    name: ClassVar[str] = "proximal"
    uses_grad: ClassVar[bool] = True
    uses_after_step: ClassVar[bool] = True

    @override
    def check_variants(self, variants: Sequence[PenaltyRule]) -> None:
        if not any(getattr(r, "l1", 0.0) > 0 for r in variants):
            raise ConfigError(
                "`mode='proximal'` soft-thresholds the L1 term, so it needs `l1` > 0; got l1=0.0 "
                f"(l2={self.l2}). For a pure L2 penalty use mode='gradient' or mode='decoupled'."
            )

    @override
    def needs_grad(self, variants: Sequence[PenaltyRule]) -> bool:
        return any(getattr(r, "l2", 0.0) > 0 for r in variants)

    @override
    def grad_(self, bucket: Bucket, scale: float) -> None:
        l2 = self.l2 * scale
        if l2 == 0.0:
            return
        with_grad, grads = with_grads(bucket.params)
        penalty_grad_inplace(list(with_grad), grads, 0.0, l2)

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        soft_threshold_(bucket.params, bucket.lr() * self.l1 * scale)


@dataclass(frozen=True)
class Decoupled(ElasticRule):
    """After the step, ``w ← w − lr·(l1·sign(w) + 2·l2·w)``, outside the optimizer (AdamW-style)."""

    name: ClassVar[str] = "decoupled"
    uses_after_step: ClassVar[bool] = True

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        decoupled_step_(bucket.params, bucket.lr(), self.l1 * scale, self.l2 * scale)


# ---------------------------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class MaxNorm(PenaltyRule):
    """After each step, every output unit's incoming weights get L2 norm ≤ ``max_norm`` (``renorm_``'s result)."""

    max_norm: float = 3.0
    name: ClassVar[str] = "max_norm"
    uses_after_step: ClassVar[bool] = True
    group_example: ClassVar[str] = "{'max_norm': 2.0}"

    @classmethod
    @override
    def checked(cls, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: check_range(prefix + k, v, 0.0, None, low_inclusive=False) for k, v in values.items()}

    @override
    def after_step_(self, bucket: Bucket, scale: float) -> None:
        backoff = bucket.state
        for param, dim in zip(bucket.params, bucket.dims):
            # A kernel with units outside the ball at its last check goes straight to renorm_ for the next
            # few steps (the norm check would only add its cost); every result is renorm_'s, bit for bit.
            wait = backoff.get(id(param), 0)
            if max_norm_inplace(param, self.max_norm, dim, check=wait == 0):
                backoff[id(param)] = RECHECK_EVERY if wait == 0 else wait - 1
            else:
                backoff[id(param)] = 0

    @override
    def stats(self, bucket: Bucket) -> dict[str, float]:
        if not bucket.params:
            return {}
        norms = [unit_norms(p, d).max() for p, d in zip(bucket.params, bucket.dims)]
        return {"max_unit_norm": float(torch.stack(norms).max())}

    @override
    def report(self, stats: Sequence[Mapping[str, float]], scale: float, variants: Sequence[PenaltyRule]) -> dict:
        values = [s["max_unit_norm"] for s in stats if "max_unit_norm" in s]
        return {"reg/max_unit_norm": max(values)} if values else {}


#: The rules by name; a subclass with a ``name`` joins it when it is defined.
RULES: Mapping[str, type[PenaltyRule]] = _REGISTRY


def rule_class(name: Any, option: str = "rule", among: Sequence[str] | None = None) -> type[PenaltyRule]:
    """The rule class registered under ``name`` (``among``: the names allowed here, default all).

    Example:
        >>> rule_class("proximal").__name__
        'Proximal'
    """
    allowed = list(among) if among is not None else list(RULES)
    if not isinstance(name, str) or name not in allowed:
        raise ConfigError(f"`{option}` must be one of {', '.join(map(repr, allowed))}; got {name!r}.")
    return RULES[name]


def make_rule(spec: PenaltyRule | Mapping[str, Any], option: str = "rule") -> PenaltyRule:
    """A rule, or one built from a mapping ``{"name": <registered name>, **arguments}``.

    Example:
        >>> make_rule({"name": "decoupled", "l2": 5e-3})
        Decoupled(l1=0.0, l2=0.005)
    """
    if isinstance(spec, PenaltyRule):
        return spec
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(
            f"`{option}` must be a penalty rule or a mapping with its `name` (one of {', '.join(map(repr, RULES))}) "
            f"and its arguments; got {spec!r}."
        )
    args = {k: v for k, v in spec.items() if k != "name"}
    cls = rule_class(spec["name"], f"{option}.name")
    unknown = set(args) - set(cls.arguments())
    if unknown:
        raise ConfigError(
            f"`{option}` for {cls.name!r} takes arguments among {', '.join(map(repr, cls.arguments()))}; "
            f"got {sorted(unknown)}."
        )
    return cls(**args)
