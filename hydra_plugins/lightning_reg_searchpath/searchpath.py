"""Add lightning_reg's ``conf/`` to the config search path of every Hydra app once the package is installed.

Hydra imports every module under the ``hydra_plugins`` namespace package at start-up and calls
:meth:`LightningRegSearchPathPlugin.manipulate_search_path`. The entry is appended, so the app's own
configs always win over ours on a name clash (an app's ``callbacks/l2.yaml`` shadows ours).

The directory is found without importing ``lightning_reg`` (which would import torch and Lightning at
every Hydra start-up): ``<package>/conf`` in a wheel, ``<repository>/conf`` in an editable install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

PROVIDER = "lightning-reg"


def lightning_reg_conf_dir() -> Path | None:
    """lightning_reg's config directory (the one holding ``train.yaml``), or None if it is not installed."""
    try:
        spec = importlib.util.find_spec("lightning_reg")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        package = Path(location).resolve()
        for cand in (package / "conf", package.parent / "conf"):
            if (cand / "train.yaml").is_file():
                return cand
    return None


def _as_dir(path: str) -> Path | None:
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        return None
    try:
        return Path(path).resolve()
    except OSError:
        return None


class LightningRegSearchPathPlugin(SearchPathPlugin):
    """Appends ``file://<lightning_reg conf dir>`` (provider ``lightning-reg``) to the search path.

    Any Hydra app can then use our groups in its defaults list, e.g. ``- /callbacks/l2@callbacks.l2``,
    and override them on its command line (``callbacks.l2.l2=1e-3``). In lightning_reg's own app the
    directory is already the primary config path, so nothing is added there.

    Example:
        >>> from hydra.core.config_search_path import ConfigSearchPath  # doctest: +SKIP
        >>> # Hydra calls this for every app: LightningRegSearchPathPlugin().manipulate_search_path(sp)
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        conf = lightning_reg_conf_dir()
        if conf is None:
            return
        if any(_as_dir(element.path) == conf for element in search_path.get_path() if element.path):
            return
        search_path.append(provider=PROVIDER, path=f"file://{conf}")
