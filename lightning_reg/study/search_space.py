"""The Hydra Optuna sweeper's search-space grammar, mapped onto Optuna distributions.

``params`` entries (and sweep overrides on the command line) use Hydra's override grammar:

- ``choice(a, b, c)`` or ``a,b,c``: a categorical parameter;
- ``range(start, stop[, step])``: integers (or floats) from ``start`` to ``stop`` inclusive in steps, as Hydra's
  Optuna sweeper maps it; the grid sampler takes Python's ``range`` (``stop`` excluded), as Hydra's does;
- ``shuffle(range(...))``: a categorical parameter of the range's values;
- ``interval(low, high)``: a continuous parameter in ``[low, high]``; ``int(interval(low, high))`` for integers;
- ``tag(log, interval(...))`` or ``tag(log, range(...))``: sampled on a log scale.

Anything that is not a sweep is a fixed override passed to every job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, QuotedString, RangeSweep
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from lightning_reg.errors import ConfigError

__all__ = ["SearchSpace", "parse_search_space", "format_value"]

_CATEGORICAL_TYPES = (type(None), bool, int, float, str)


@dataclass
class SearchSpace:
    """Optuna distributions by config key, the fixed overrides, and (for a grid) the values of each key.

    Example:
        >>> space = parse_search_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
        ...                             "model.dropout": "choice(0.0, 0.5)"}, ["trainer.max_epochs=3"])
        >>> sorted(space.distributions), space.fixed
        (['model.dropout', 'optimizer.lr'], ['trainer.max_epochs=3'])
        >>> space.overrides({"optimizer.lr": 0.001, "model.dropout": 0.5})
        ['optimizer.lr=0.001', 'model.dropout=0.5']
    """

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    grid_values: dict[str, list[Any] | None] = field(default_factory=dict)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The job overrides for one trial's parameter values (those of a custom search space after the rest).

        Example:
            >>> SearchSpace({"a": None}).overrides({"z": 2, "a": 1})
            ['a=1', 'z=2']
        """
        keys = [*self.distributions, *(k for k in params if k not in self.distributions)]
        return [f"{key}={format_value(params[key])}" for key in keys]

    def grid(self) -> dict[str, list[Any]]:
        """The search space as a grid for :class:`optuna.samplers.GridSampler`; intervals have no grid."""
        continuous = [k for k, v in self.grid_values.items() if v is None]
        if continuous:
            raise ConfigError(
                f"the grid sampler needs a finite set of values for every parameter; {', '.join(continuous)} "
                "is an interval(...). Use choice(...) or range(...) for it, or another sampler "
                "(hydra/sweeper/lightning_reg_sampler=tpe, random, qmc, ...)."
            )
        return {k: list(v) for k, v in self.grid_values.items() if v is not None}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


def format_value(value: Any) -> str:
    """A Hydra override value for a sampled parameter (strings quoted when the grammar needs it).

    Example:
        >>> format_value(0.25), format_value("adam"), format_value("a b"), format_value(None)
        ('0.25', 'adam', "'a b'", 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "_-./:" for c in value)
        return value if plain else "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _number(key: str, x: Any) -> int | float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ConfigError(f"`hydra.sweeper.params.{key}`: range and interval bounds must be numbers; got {x!r}.")
    return x


def _distribution(key: str, override: Override) -> tuple[BaseDistribution, list[Any] | None]:
    value = override.value()
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, ChoiceSweep):
        choices: list[CategoricalChoiceType] = []
        for v in value.list:
            choice = v.text if isinstance(v, QuotedString) else v
            if not isinstance(choice, _CATEGORICAL_TYPES):
                raise ConfigError(
                    f"`hydra.sweeper.params.{key}`: choice() values must be null, bool, int, float or str (Optuna "
                    f"stores them); got {choice!r}. Name the alternatives instead, e.g. config-group options."
                )
            choices.append(choice)
        if log:
            raise ConfigError(
                f"`hydra.sweeper.params.{key}`: tag(log, ...) applies to interval() and range(), not choice()."
            )
        return CategoricalDistribution(choices), choices
    if isinstance(value, RangeSweep):
        start, stop, step = (_number(key, x) for x in (value.start, value.stop, value.step))
        values = list(value.range())
        if not values:
            raise ConfigError(f"`hydra.sweeper.params.{key}`: range({start}, {stop}, {step}) is empty.")
        if value.shuffle:
            # As Hydra's Optuna sweeper: shuffle(range(...)) is a categorical of the range's values.
            if log:
                raise ConfigError(f"`hydra.sweeper.params.{key}`: tag(log, ...) does not apply to shuffle(range()).")
            return CategoricalDistribution(values), values
        # As Hydra's Optuna sweeper: range(start, stop, step) samples from start to stop *inclusive* in steps
        # (Optuna's int and discrete float distributions); the grid sampler takes Python's range, stop excluded.
        if all(isinstance(x, int) for x in (start, stop, step)):
            if log and step != 1:
                raise ConfigError(f"`hydra.sweeper.params.{key}`: a log-scale range needs step 1; got step {step}.")
            return IntDistribution(int(start), int(stop), log=log, step=1 if log else int(step)), values
        if log:
            raise ConfigError(
                f"`hydra.sweeper.params.{key}`: a log-scale range must be over integers; got {start}, {stop}, {step}."
            )
        return FloatDistribution(float(start), float(stop), step=float(step)), [float(v) for v in values]
    if isinstance(value, IntervalSweep):
        low, high = _number(key, value.start), _number(key, value.end)
        if not low < high:
            raise ConfigError(f"`hydra.sweeper.params.{key}`: interval(low, high) needs low < high; got {low}, {high}.")
        if log and low <= 0:
            raise ConfigError(f"`hydra.sweeper.params.{key}`: a log-scale interval needs low > 0; got {low}.")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log), None
        return FloatDistribution(float(low), float(high), log=log), None
    raise ConfigError(f"`hydra.sweeper.params.{key}`: unsupported sweep {override.input_line!r}.")


def parse_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """Build the search space from the sweeper's ``params`` and the command line's overrides.

    A command-line override of a key in ``params`` replaces that entry, as in Hydra's own sweepers.
    """
    lines: dict[str, str] = {}
    for key, value in (params or {}).items():
        lines[str(key)] = f"{key}={value}"
    parser = OverridesParser.create()
    for argument, override in zip(arguments, parser.parse_overrides(list(arguments))):
        lines[override.get_key_element()] = argument
    space = SearchSpace()
    for key, line in lines.items():
        try:
            (override,) = parser.parse_overrides([line])
        except Exception as err:  # noqa: BLE001 - Hydra's grammar errors carry their own text
            raise ConfigError(f"`hydra.sweeper.params.{key}`: cannot parse {line!r}: {err}") from None
        if override.is_sweep_override():
            if override.is_delete() or override.is_add() or override.is_force_add():
                raise ConfigError(f"`{line}`: a swept key cannot carry a +, ++ or ~ prefix.")
            dist, grid = _distribution(key, override)
            space.distributions[key] = dist
            space.grid_values[key] = grid
        else:
            space.fixed.append(line)
    return space
