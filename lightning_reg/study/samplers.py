"""The sampler a sweep builds from ``hydra.sweeper.sampler``, and the checks on sampler and pruner nodes.

The samplers are Optuna's own classes; this only resolves the node Hydra composed (ours, or one of Hydra's Optuna
sweeper's presets) and builds it, with one-line errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from lightning_reg.errors import ConfigError
from lightning_reg.study.options import SAMPLER_GROUP, SAMPLER_NAMES, sampler_presets
from lightning_reg.study.search_space import SearchSpace

__all__ = ["resolve_sampler_node"]


#: Hydra's Optuna sweeper names the stock grid sampler, which calls ``study.stop()`` (refused outside
#: ``optimize``); ours is the same sampler without that call.
_GRID_TARGETS = ("optuna.samplers.GridSampler", "optuna.samplers._grid.GridSampler")


def _check_node(key: str, node: Any, group: str, names: Sequence[str]) -> dict[str, Any]:
    """A sampler or pruner config as a plain dict; a bare name (``hydra.sweeper.pruner=median``) is refused."""
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(
            f"`hydra.sweeper.{key}` must be a config node: choose one with {group}=<name> ({', '.join(names)}) "
            f"or give hydra.sweeper.{key}._target_=<class>; got {node!r}."
        )
    return dict(node)


def resolve_sampler_node(node: Any, config: DictConfig | None = None) -> dict[str, Any]:
    """The sampler config to build, from ``hydra.sweeper.sampler`` as composed.

    A sampler of Hydra's Optuna sweeper (``hydra/sweeper/sampler=<name>``, when that plugin is installed) is
    merged over our default preset; the preset's keys that the chosen config does not have are dropped here, so
    that ``hydra/sweeper/sampler=random`` builds a RandomSampler and not a RandomSampler with TPE's arguments.

    Example:
        >>> resolve_sampler_node({"_target_": "optuna.samplers.GridSampler", "_partial_": True, "seed": None})
        {'_target_': 'lightning_reg.study.engine.GridSamplerAskTell', 'seed': None}
    """

    out = _check_node("sampler", node, SAMPLER_GROUP, SAMPLER_NAMES)
    choices = OmegaConf.select(config, "hydra.runtime.choices") if config is not None else None
    theirs = choices.get("hydra/sweeper/sampler") if choices is not None else None
    if theirs and choices is not None:
        ours = sampler_presets().get(str(choices.get(SAMPLER_GROUP) or ""), {})
        from hydra.core.config_store import ConfigStore

        try:
            their_keys = set(ConfigStore.instance().load(f"hydra/sweeper/sampler/{theirs}.yaml").node.keys())
        except Exception:  # noqa: BLE001 - a yaml file on the search path, not a stored node
            their_keys = {"_target_", "_partial_"}
        out = {k: v for k, v in out.items() if k in their_keys or k not in ours}
    out.pop("_partial_", None)
    if out.get("_target_") in _GRID_TARGETS:
        out["_target_"] = "lightning_reg.study.engine.GridSamplerAskTell"
    return out


def _sampler_class(node: Any) -> type:
    """The class the sampler config names (one look-up, shared by the grid checks and the build)."""
    from hydra.utils import get_class

    target = dict(node or {}).get("_target_", "optuna.samplers.TPESampler")
    try:
        return get_class(str(target))
    except Exception as err:  # noqa: BLE001 - hydra's import error text
        raise ConfigError(
            f"`hydra.sweeper.sampler._target_` must name an Optuna sampler class; got {target!r} ({err})."
        ) from None


def _is_grid(node: Any) -> bool:
    cls = _sampler_class(node)
    return isinstance(cls, type) and issubclass(cls, optuna.samplers.GridSampler)


def _drop_unknown_nulls(node: dict[str, Any], cls: Any) -> dict[str, Any]:
    """Our presets list every argument of the current Optuna; one this Optuna lacks is dropped when null."""
    import inspect

    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return node
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return node
    return {k: v for k, v in node.items() if k.startswith("_") or k in params or v is not None}


def _build_sampler(node: Any, space: SearchSpace) -> optuna.samplers.BaseSampler:
    from hydra.utils import instantiate

    node = dict(node or {"_target_": "optuna.samplers.TPESampler"})
    target = node.get("_target_")
    if _is_grid(node) and node.get("search_space") is None:
        node["search_space"] = space.grid()
    node = _drop_unknown_nulls(node, _sampler_class(node))
    try:
        sampler = instantiate(node, _convert_="all")
    except Exception as err:  # noqa: BLE001
        cause = err.__cause__ or err
        raise ConfigError(f"`hydra.sweeper.sampler` ({target}): {type(cause).__name__}: {cause}") from None
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ConfigError(
            f"`hydra.sweeper.sampler._target_` must build an optuna sampler; {target!r} built {type(sampler).__name__}."
        )
    return sampler
