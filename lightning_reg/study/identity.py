"""A study is opened only if it is the study: the same direction, objective and search space.

Optuna stores no search space for a study, so the first worker records it (and the optimized metric) as study
attributes; every worker that joins later is compared with them before it writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from lightning_reg.errors import ConfigError
from lightning_reg.study.engine import ATTR, mask_url
from lightning_reg.study.search_space import SearchSpace

__all__ = ["METRIC_ATTR", "SPACE_ATTR"]


#: The study attributes that say what the study is: written when it is created, compared by every joining worker.
SPACE_ATTR = ATTR["search_space"]
METRIC_ATTR = ATTR["optimized_metric"]


def _space_record(space: SearchSpace) -> dict[str, str]:
    return {k: optuna.distributions.distribution_to_json(d) for k, d in sorted(space.distributions.items())}


def _space_difference(before: Mapping[str, str], now: Mapping[str, str]) -> str:
    """The keys whose distributions differ between two recorded search spaces, in words.

    Example:
        >>> from lightning_reg.study.search_space import parse_search_space
        >>> a = _space_record(parse_search_space({"x": "interval(0, 1)", "y": "choice(1, 2)"}, []))
        >>> b = _space_record(parse_search_space({"x": "interval(0, 2)", "z": "choice(1, 2)"}, []))
        >>> _space_difference(a, b)
        'x: FloatDistribution(high=1.0, log=False, low=0.0, step=None) in the study, FloatDistribution(high=2.0, log=False, low=0.0, step=None) here; y: in the study, not in this sweep; z: new in this sweep'
    """

    def show(text: str) -> str:
        return repr(optuna.distributions.json_to_distribution(text))

    parts = []
    for key in sorted(set(before) | set(now)):
        if key not in now:
            parts.append(f"{key}: in the study, not in this sweep")
        elif key not in before:
            parts.append(f"{key}: new in this sweep")
        elif before[key] != now[key]:
            parts.append(f"{key}: {show(before[key])} in the study, {show(now[key])} here")
    return "; ".join(parts)


def _check_same_study(
    existing: optuna.Study, name: str, url: str, directions: list[str], monitor: Any, space: SearchSpace
) -> None:
    """A joining worker (or a resumed sweep) must run THE study: same direction, objective and search space."""
    ways = "Use another hydra.sweeper.study_name, or a fresh hydra.sweep.dir (or storage), for a new study."
    where = f"study {name!r} in {mask_url(url)!r}"
    have = [d.name.lower() for d in existing.directions]
    if have != directions:
        raise ConfigError(f"{where} exists with direction {have!r}; this sweep asks for {directions!r}. {ways}")
    attrs = existing.user_attrs
    if METRIC_ATTR in attrs and attrs[METRIC_ATTR] != monitor:
        raise ConfigError(
            f"{where} optimizes optimized_metric={attrs[METRIC_ATTR]!r}; this sweep optimizes {monitor!r}. {ways}"
        )
    if SPACE_ATTR in attrs:
        diff = _space_difference(attrs[SPACE_ATTR], _space_record(space))
        if diff:
            raise ConfigError(f"{where} has another search space ({diff}). {ways}")
