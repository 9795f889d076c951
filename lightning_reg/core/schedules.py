"""Schedules: pure functions of training progress that return a rate or coefficient.

Every schedule is indexed by optimizer step or by epoch (its ``unit``), is evaluated without a
Trainer, and is a plain object whose ``__call__(t)`` gives the value at step/epoch ``t``. Callbacks
call :meth:`Schedule.at` with the trainer's ``global_step`` and ``current_epoch``; because the value is
a pure function of those counters, a resumed run continues the same sequence.

Example:
    >>> s = Linear(start=0.0, end=0.5, begin=0, end_at=10, unit="step")
    >>> s(0), s(5), s(10), s(20)
    (0.0, 0.25, 0.5, 0.5)
    >>> make_schedule("early", p=0.1, cutoff=3, unit="epoch").at(step=100, epoch=4)
    0.0
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from typing_extensions import override

from lightning_reg.errors import ConfigError, check_choice, check_int, check_range

__all__ = [
    "SCHEDULES",
    "UNITS",
    "Constant",
    "Cosine",
    "Curriculum",
    "Early",
    "Exponential",
    "FromCallable",
    "Late",
    "Linear",
    "Milestones",
    "Schedule",
    "ScheduleLike",
    "as_schedule",
    "make_schedule",
    "probe_points",
]

UNITS = ("step", "epoch")


class Schedule:
    """Base class: subclasses implement ``__call__(t) -> float`` for a step or epoch index ``t``.

    Example:
        >>> class Halving(Schedule):  # the rate halves every epoch
        ...     def __init__(self, p, unit="epoch"):
        ...         super().__init__(unit)
        ...         self.p = p
        ...     def __call__(self, t):
        ...         return self.p / 2**t
        >>> s = Halving(0.4)
        >>> s.at(step=500, epoch=2), s.max_value(horizon=10), s
        (0.1, 0.4, Halving(unit='epoch', p=0.4))
    """

    unit: str = "step"

    def __init__(self, unit: str = "step") -> None:
        self.unit = check_choice("unit", unit, UNITS)

    def __call__(self, t: float) -> float:
        raise NotImplementedError

    def at(self, step: int, epoch: int) -> float:
        """Value for the trainer position: ``step`` is the optimizer step, ``epoch`` the epoch index."""
        return float(self(step if self.unit == "step" else epoch))

    def max_value(self, horizon: int = 10_000) -> float:
        """Largest value over ``t`` in ``[0, horizon]`` (used to validate rates)."""
        return max(self(t) for t in probe_points(horizon))

    def min_value(self, horizon: int = 10_000) -> float:
        """Smallest value over ``t`` in ``[0, horizon]`` (used to validate rates)."""
        return min(self(t) for t in probe_points(horizon))

    def key_points(self) -> list[tuple[str, int, int]]:
        """``(option, value, t)``: the index ``t`` that training must reach for ``option`` to take effect.

        A callback compares ``t`` with the number of steps/epochs it will run and warns when one lies
        beyond it (a cutoff after the last epoch never takes effect). A ramp ending at ``end_at`` needs
        index ``end_at - 1``: the last index still on the ramp.

        Example:
            >>> Late(p=0.1, cutoff=5).key_points()
            [('cutoff', 5, 5)]
        """
        return []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def probe_points(horizon: int) -> list[int]:
    """The indices a validation of a schedule over ``[0, horizon]`` evaluates: at most about 1,000, both ends included.

    Example:
        >>> probe_points(5)
        [0, 1, 2, 3, 4, 5]
        >>> pts = probe_points(10_000)
        >>> len(pts), pts[:3], pts[-1]
        (1001, [0, 10, 20], 10000)
    """
    horizon = max(0, int(horizon))
    return sorted(set(range(0, horizon + 1, max(1, horizon // 1000))) | {horizon})


#: What a schedule argument accepts (:func:`as_schedule` turns it into a :class:`Schedule`): a Schedule, a
#: number, a ``{"name": ..., **kwargs}`` or ``{t: value}`` mapping, or a callable of ``t``.
ScheduleLike = Schedule | float | Mapping[Any, Any] | Callable[[float], float]


def _interp(start: float, end: float, frac: float) -> float:
    return start + (end - start) * min(1.0, max(0.0, frac))


class Constant(Schedule):
    """``value`` at every ``t``.

    Example:
        >>> Constant(0.3)(1000)
        0.3
    """

    def __init__(self, value: float, unit: str = "step") -> None:
        super().__init__(unit)
        self.value = check_range("value", value)

    def __call__(self, t: float) -> float:
        return self.value


class _Ramp(Schedule):
    """Shared arguments of the ramps: ``start`` before ``begin``, ``end`` from ``end_at`` on."""

    def __init__(self, start: float, end: float, begin: int = 0, end_at: int = 1, unit: str = "step") -> None:
        super().__init__(unit)
        self.start, self.end = check_range("start", start), check_range("end", end)
        self.begin = check_int("begin", begin, low=0)
        self.end_at = check_int("end_at", end_at, low=0)
        if self.end_at <= self.begin:
            raise ConfigError(f"`end_at` must be greater than `begin` ({self.begin}); got {end_at!r}.")

    def _frac(self, t: float) -> float:
        return min(1.0, max(0.0, (t - self.begin) / (self.end_at - self.begin)))

    @override
    def key_points(self) -> list[tuple[str, int, int]]:
        return [("begin", self.begin, self.begin), ("end_at", self.end_at, self.end_at - 1)]


class Linear(_Ramp):
    """``start`` until ``begin``, linearly to ``end`` at ``end_at``, then ``end`` (warm-up or decay).

    Example:
        >>> Linear(1.0, 0.0, begin=0, end_at=4)(1)
        0.75
    """

    def __call__(self, t: float) -> float:
        return _interp(self.start, self.end, self._frac(t))


class Cosine(_Ramp):
    """Half-cosine from ``start`` at ``begin`` to ``end`` at ``end_at``, constant outside.

    Example:
        >>> round(Cosine(1.0, 0.0, begin=0, end_at=10)(5), 6)
        0.5
    """

    def __call__(self, t: float) -> float:
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * self._frac(t)))


def _milestone(t: Any) -> int:
    """A milestone is a whole step or epoch: an int (or its decimal string, a YAML/JSON key); 2.7 is an error."""
    if isinstance(t, str) and t.strip().isdigit():
        return int(t)
    return check_int("milestone", t)


class Milestones(Schedule):
    """Piecewise constant: ``{t: value}``; the value of the largest key ≤ t, ``initial`` before the first.

    Same form as Lightning's ``GradientAccumulationScheduler(scheduling={epoch: value})``. Alternatively
    give ``milestones=[t1, t2, ...]`` with ``initial`` and ``gamma``: the value is multiplied by ``gamma`` at
    each milestone (torch's MultiStepLR).

    Example:
        >>> s = Milestones({0: 0.1, 5: 0.3}, unit="epoch")
        >>> s(4), s(5)
        (0.1, 0.3)
        >>> Milestones(milestones=[2, 4], initial=1.0, gamma=0.5)(4)
        0.25
    """

    def __init__(
        self,
        values: Mapping[int, float] | None = None,
        milestones: Sequence[int] | None = None,
        initial: float = 0.0,
        gamma: float = 0.1,
        unit: str = "step",
    ) -> None:
        super().__init__(unit)
        if (values is None) == (milestones is None):
            raise ConfigError(
                f"give exactly one of `values` ({{t: value}}) or `milestones` (list); got values={values!r}, "
                f"milestones={milestones!r}."
            )
        self.initial = check_range("initial", initial)
        if values is not None:
            points = sorted((_milestone(k), check_range(f"values[{k}]", v)) for k, v in dict(values).items())
        else:
            ms = sorted(_milestone(m) for m in milestones)  # type: ignore[union-attr]
            check_range("gamma", gamma, 0.0)
            points = [(m, self.initial * float(gamma) ** (i + 1)) for i, m in enumerate(ms)]
        for k, _ in points:
            if k < 0:
                raise ConfigError(f"schedule milestones must be >= 0; got {k}.")
        self.points = points

    def __call__(self, t: float) -> float:
        value = self.initial
        for k, v in self.points:
            if t >= k:
                value = v
        return value

    @override
    def key_points(self) -> list[tuple[str, int, int]]:
        return [("milestones", k, k) for k, _ in self.points]


class Exponential(Schedule):
    """``start · gamma^(t − begin)`` after ``begin`` (``start`` before), floored at ``minimum``.

    Example:
        >>> Exponential(1.0, gamma=0.5)(3)
        0.125
    """

    def __init__(self, start: float, gamma: float, begin: int = 0, minimum: float = 0.0, unit: str = "step") -> None:
        super().__init__(unit)
        self.start = check_range("start", start)
        self.gamma = check_range("gamma", gamma, 0.0, low_inclusive=False)
        self.begin = check_int("begin", begin, low=0)
        self.minimum = check_range("minimum", minimum)

    def __call__(self, t: float) -> float:
        return max(self.minimum, self.start * self.gamma ** max(0.0, t - self.begin))

    @override
    def key_points(self) -> list[tuple[str, int, int]]:
        return [("begin", self.begin, self.begin)]


class Early(Schedule):
    """Early dropout (Liu et al. 2023): ``p`` until ``cutoff`` (constant, or linear p→0), then 0.

    Example:
        >>> s = Early(p=0.2, cutoff=4, mode="linear", unit="epoch")
        >>> s(0), s(2), s(4)
        (0.2, 0.1, 0.0)
    """

    def __init__(self, p: float, cutoff: int, mode: str = "constant", unit: str = "step") -> None:
        super().__init__(unit)
        self.p = check_range("p", p, 0.0)
        self.cutoff = check_int("cutoff", cutoff, low=1)
        self.mode = check_choice("mode", mode, ("constant", "linear"))

    def __call__(self, t: float) -> float:
        if t >= self.cutoff:
            return 0.0
        return self.p if self.mode == "constant" else self.p * (1.0 - t / self.cutoff)

    @override
    def key_points(self) -> list[tuple[str, int, int]]:
        return [("cutoff", self.cutoff, self.cutoff)]


class Late(Schedule):
    """Late dropout: 0 until ``cutoff``, then ``p``.

    Example:
        >>> Late(p=0.3, cutoff=10)(9), Late(p=0.3, cutoff=10)(10)
        (0.0, 0.3)
    """

    def __init__(self, p: float, cutoff: int, unit: str = "step") -> None:
        super().__init__(unit)
        self.p = check_range("p", p, 0.0)
        self.cutoff = check_int("cutoff", cutoff, low=0)

    def __call__(self, t: float) -> float:
        return self.p if t >= self.cutoff else 0.0

    @override
    def key_points(self) -> list[tuple[str, int, int]]:
        return [("cutoff", self.cutoff, self.cutoff)]


class Curriculum(Schedule):
    """Curriculum dropout (Morerio et al. 2017): retain θ(t) = (1−θ̄)·e^(−γt) + θ̄; returns 1 − θ(t).

    ``p`` is the final drop rate 1 − θ̄; the rate rises from 0 towards ``p``.

    Example:
        >>> s = Curriculum(p=0.5, gamma=0.001)
        >>> s(0), round(s(1_000_000), 6)
        (0.0, 0.5)
    """

    def __init__(self, p: float, gamma: float = 1e-3, unit: str = "step") -> None:
        super().__init__(unit)
        self.p = check_range("p", p, 0.0)
        self.gamma = check_range("gamma", gamma, 0.0, low_inclusive=False)

    def __call__(self, t: float) -> float:
        theta_bar = 1.0 - self.p
        theta = (1.0 - theta_bar) * math.exp(-self.gamma * t) + theta_bar
        return 1.0 - theta


class FromCallable(Schedule):
    """Wrap any user function ``fn(t) -> float`` (``t`` the step or epoch index).

    Example:
        >>> FromCallable(lambda t: 0.1 * (t % 2))(3)
        0.1
    """

    def __init__(self, fn: Callable[[float], float], unit: str = "step") -> None:
        super().__init__(unit)
        if not callable(fn):
            raise ConfigError(f"`fn` must be callable; got {fn!r}.")
        try:
            inspect.signature(fn).bind(0)
        except TypeError:
            raise ConfigError(
                f"a schedule function must take one argument, the step or epoch index t, and return the value "
                f"(e.g. lambda t: 0.1 * min(1, t / 1000)); got {fn!r}{inspect.signature(fn)}."
            ) from None
        except ValueError:  # a builtin without a signature: called as it is
            pass
        self.fn = fn

    def __call__(self, t: float) -> float:
        return float(self.fn(t))

    def __repr__(self) -> str:
        # The function's name, not its address: the repr goes into callback state keys, which must be
        # the same in the run that saved a checkpoint and the run that resumes it.
        fn = getattr(self.fn, "__qualname__", None) or type(self.fn).__qualname__
        module = getattr(self.fn, "__module__", None)
        return f"FromCallable(fn={module + '.' if module else ''}{fn}, unit={self.unit!r})"


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "cosine": Cosine,
    "milestones": Milestones,
    "step": Milestones,
    "exponential": Exponential,
    "early": Early,
    "late": Late,
    "curriculum": Curriculum,
    "callable": FromCallable,
}


def make_schedule(name: str, **kwargs: Any) -> Schedule:
    """Build a schedule by name (see :data:`SCHEDULES`).

    Example:
        >>> make_schedule("late", p=0.1, cutoff=5)(6)
        0.1
    """
    if name not in SCHEDULES:
        raise ConfigError(f"`schedule` must be one of {', '.join(map(repr, SCHEDULES))}; got {name!r}.")
    cls = SCHEDULES[name]
    try:
        return cls(**kwargs)
    except TypeError as err:
        params = ", ".join(p for p in inspect.signature(cls).parameters)
        raise ConfigError(
            f"schedule {name!r} ({cls.__name__}) takes the arguments {params}; got {sorted(kwargs)} ({err})."
        ) from None


def as_schedule(
    value: ScheduleLike,
    name: str,
    unit: str = "step",
) -> Schedule:
    """Coerce a value into a :class:`Schedule`.

    Accepted: a Schedule (returned as is); a number (:class:`Constant`); a ``{"name": ..., **kwargs}``
    mapping (:func:`make_schedule`); a ``{t: value}`` mapping with integer keys (:class:`Milestones`, as
    Lightning's ``GradientAccumulationScheduler`` takes); a callable of ``t`` (:class:`FromCallable`).
    ``unit`` applies to the forms that do not state their own.

    Example:
        >>> as_schedule({0: 0.1, 5: 0.0}, "schedule", unit="epoch")(6)
        0.0
        >>> as_schedule({"name": "late", "p": 0.2, "cutoff": 3}, "schedule")(3)
        0.2
    """
    check_choice("unit", unit, UNITS)
    if isinstance(value, Schedule):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"`{name}` must be a number, a Schedule, a mapping or a callable; got {value!r}.")
    if isinstance(value, (int, float)):
        return Constant(float(value), unit=unit)
    if isinstance(value, Mapping):
        kwargs = dict(value)
        if kwargs and all(isinstance(k, int) and not isinstance(k, bool) for k in kwargs):
            return Milestones(values=kwargs, unit=unit)
        if "name" not in kwargs:
            raise ConfigError(
                f"`{name}` as a mapping needs a `name` key (one of {', '.join(SCHEDULES)}) or integer keys "
                f"({{t: value}}); got {value!r}."
            )
        sched_name = kwargs.pop("name")
        kwargs.setdefault("unit", unit)
        if sched_name not in SCHEDULES:
            raise ConfigError(f"`{name}.name` must be one of {', '.join(map(repr, SCHEDULES))}; got {sched_name!r}.")
        return make_schedule(sched_name, **kwargs)
    if callable(value):
        try:
            return FromCallable(value, unit=unit)
        except ConfigError as err:
            raise ConfigError(f"`{name}`: {err}") from None
    raise ConfigError(f"`{name}` must be a number, a Schedule, a mapping or a callable; got {value!r}.")
