"""Every private Hydra name lightning_reg relies on, in one place (Lightning's are in ``_lightning_internals``).

One use: :class:`ComposeOnceLoader`, the config loader the lightning_reg sweeper hands its launcher. Hydra composes
every job of a sweep from nothing: it reads and merges each YAML file of the defaults tree again, about 150 ms a
job on this project's config, although a sweep's jobs differ only in the values they override. No public Hydra API
composes part of the way, so this loader repeats the steps of Hydra 1.3's ``ConfigLoaderImpl._load_configuration_impl``
with one change: the config composed from the defaults list (before any value override) is kept, per config name
and choice of config groups, and each later job starts from a deep copy of it. Everything after that is Hydra's own
code, called as Hydra calls it: the value overrides, ``hydra.overrides``, ``hydra.runtime``, ``override_dirname``.

Two guards keep it honest:
- ``tests/test_hydra_internals.py`` composes jobs both ways on the installed Hydra and compares them, and checks
  each private name used here, so an upgrade says what moved.
- At run time the first job that reuses a composition is also composed by Hydra itself and compared; if they
  differ, the loader says so in one warning and hands every job to Hydra from then on.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from typing import Any

from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from typing_extensions import override

__all__ = ["ComposeOnceLoader", "compose_once"]

log = logging.getLogger("lightning_reg.study")


def _same(a: DictConfig, b: DictConfig) -> bool:
    """Equal content, unresolved, and the same struct flag at the root (what a job's code can see)."""
    return bool(
        OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(b, resolve=False)
        and OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
        and OmegaConf.is_readonly(a) == OmegaConf.is_readonly(b)
    )


class ComposeOnceLoader(ConfigLoader):
    """Hydra's config loader for a sweep's jobs, composing each distinct choice of config groups once.

    Wraps Hydra's own ``ConfigLoaderImpl`` (``inner``); every method but :meth:`load_sweep_config` is the inner
    loader's. A job that overrides only values (a learning rate, a seed, ``hydra.sweep.subdir``) reuses the
    composition of an earlier job with the same config groups; a job that picks another group option
    (``optimizer=sgd``) composes once for that option. What differs from Hydra's: a config file edited while the
    sweep runs reaches jobs whose config groups no earlier job used, and no other job (every trial of a sweep
    then trains the config the sweep started with).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._memo: dict[tuple[Any, ...], tuple[DictConfig, dict[str, Any], list[Any]]] = {}
        self._repos: dict[tuple[Any, ...], Any] = {}
        self._checked = False
        self.enabled = True
        #: composed from the defaults list / taken from the memo (for tests and benchmarks)
        self.composed = 0
        self.reused = 0

    # -- the inner loader's --------------------------------------------------------------------------------------
    @override
    def load_configuration(
        self,
        config_name: str | None,
        overrides: list[str],
        run_mode: RunMode,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> DictConfig:
        return self._inner.load_configuration(
            config_name=config_name,
            overrides=overrides,
            run_mode=run_mode,
            from_shell=from_shell,
            validate_sweep_overrides=validate_sweep_overrides,
        )

    @override
    def get_search_path(self) -> Any:
        return self._inner.get_search_path()

    @override
    def get_sources(self) -> list[Any]:
        return self._inner.get_sources()

    @override
    def list_groups(self, parent_name: str) -> list[str]:
        return self._inner.list_groups(parent_name)

    @override
    def get_group_options(
        self,
        group_name: str,
        results_filter: Any = None,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        kwargs: dict[str, Any] = {"config_name": config_name, "overrides": overrides}
        if results_filter is not None:
            kwargs["results_filter"] = results_filter
        return self._inner.get_group_options(group_name, **kwargs)

    @override
    def compute_defaults_list(self, config_name: str | None, overrides: list[str], run_mode: RunMode) -> Any:
        return self._inner.compute_defaults_list(config_name, overrides, run_mode)

    # -- a sweep's job -------------------------------------------------------------------------------------------
    @override
    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """What Hydra's ``load_sweep_config`` returns, from a kept composition when there is one."""
        if not self.enabled:
            return self._inner.load_sweep_config(master_config, sweep_overrides)
        overrides = OmegaConf.to_container(master_config.hydra.overrides.hydra)
        assert isinstance(overrides, list)
        overrides = overrides + list(sweep_overrides)
        config_name = master_config.hydra.job.config_name
        try:
            cfg, reused = self._load(config_name, overrides)
        except OmegaConfBaseException as e:
            raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e
        if reused and not self._checked:
            self._checked = True
            theirs = self._inner.load_configuration(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN)
            if not _same(cfg, theirs):
                self.enabled = False
                log.warning(
                    "this Hydra (%s) composes a job differently from lightning_reg's reuse of an earlier "
                    "composition; every job is composed by Hydra from now on",
                    _hydra_version(),
                )
                cfg = theirs
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _key(self, config_name: str | None, parsed: list[Any]) -> tuple[tuple[Any, ...], list[Any]]:
        """The memo key (config name, search path, config-group overrides) and the value overrides."""
        from hydra._internal.defaults_list import Overrides

        searchpath = tuple(o.input_line for o in parsed if o.get_key_element() == "hydra.searchpath")
        repo_key = (config_name, searchpath)
        repo = self._repos.get(repo_key)
        if repo is None:
            _, repo = self._inner._parse_overrides_and_create_caching_repo(config_name, list(searchpath))
            self._repos[repo_key] = repo
        values = Overrides(repo=repo, overrides_list=parsed).config_overrides
        groups = tuple(o.input_line for o in parsed if not any(o is v for v in values))
        return (*repo_key, groups), values

    def _load(self, config_name: str | None, overrides: list[str]) -> tuple[DictConfig, bool]:
        """Hydra 1.3's ``_load_configuration_impl`` in run mode, composing from the defaults list once per key."""
        from hydra import __version__, version
        from hydra._internal.config_loader_impl import get_overrides_dirname
        from hydra._internal.defaults_list import create_defaults_list
        from hydra.conf import ConfigSourceInfo
        from hydra.core.utils import JobRuntime

        inner = self._inner
        inner.ensure_main_config_source_available()
        parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        inner.validate_sweep_overrides_legal(overrides=parsed, run_mode=RunMode.RUN, from_shell=True)
        key, config_overrides = self._key(config_name, parsed)
        kept = self._memo.get(key)
        if kept is None:
            _, caching_repo = inner._parse_overrides_and_create_caching_repo(config_name, overrides)
            defaults_list = create_defaults_list(
                repo=caching_repo,
                config_name=config_name,
                overrides_list=parsed,
                prepend_hydra=True,
                skip_missing=False,
            )
            config_overrides = defaults_list.config_overrides
            cfg = inner._compose_config_from_defaults_list(defaults=defaults_list.defaults, repo=caching_repo)
            choices = dict(defaults_list.overrides.known_choices)
            sources = [
                ConfigSourceInfo(path=x.path, schema=x.scheme(), provider=x.provider)
                for x in caching_repo.get_sources()
            ]
            self._memo[key] = (copy.deepcopy(cfg), choices, sources)
            self.composed += 1
        else:
            kept_cfg, choices, sources = kept
            cfg = copy.deepcopy(kept_cfg)
            self.reused += 1

        # From here on, Hydra's steps as Hydra runs them.
        OmegaConf.set_struct(cfg, True)
        OmegaConf.set_readonly(cfg.hydra, False)
        inner._apply_overrides_to_config(config_overrides, cfg)
        app_overrides = []
        for o in parsed:
            if o.is_hydra_override():
                cfg.hydra.overrides.hydra.append(o.input_line)
            else:
                cfg.hydra.overrides.task.append(o.input_line)
                app_overrides.append(o)
        with open_dict(cfg.hydra):
            cfg.hydra.runtime.choices.update(choices)
            for k in cfg.hydra.job.env_copy:
                cfg.hydra.job.env_set[k] = os.environ[k]
        cfg.hydra.runtime.version = __version__
        cfg.hydra.runtime.version_base = version.getbase()
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.runtime.config_sources = copy.deepcopy(sources)
        if "name" not in cfg.hydra.job:
            cfg.hydra.job.name = JobRuntime().get("name")
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app_overrides,
            kv_sep=cfg.hydra.job.config.override_dirname.kv_sep,
            item_sep=cfg.hydra.job.config.override_dirname.item_sep,
            exclude_keys=cfg.hydra.job.config.override_dirname.exclude_keys,
        )
        cfg.hydra.job.config_name = config_name
        return cfg, kept is not None


def _hydra_version() -> str:
    import hydra

    return str(hydra.__version__)


def compose_once(loader: Any) -> Any:
    """``loader`` wrapped in a :class:`ComposeOnceLoader` when it is Hydra's own ``ConfigLoaderImpl``; else ``loader``."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    if isinstance(loader, ConfigLoaderImpl):
        return ComposeOnceLoader(loader)
    return loader
