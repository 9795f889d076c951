"""Config schema of ``hydra/sweeper=lightning_reg_optuna`` and its sampler and pruner groups.

The keys and the search-space grammar are those of Hydra's Optuna sweeper (``direction``, ``study_name``,
``storage``, ``n_trials``, ``n_jobs``, ``sampler``, ``params``), so moving over is one line:
``override /hydra/sweeper: lightning_reg_optuna``. Added: ``pruner``, ``folds``, ``confirm`` and the
heartbeat settings. Nothing here imports Optuna: Hydra imports every plugin module at start-up.
"""

from hydra.core.config_store import ConfigStore

from lightning_reg.study.options import (
    PRUNER_GROUP,
    SAMPLER_GROUP,
    LightningRegOptunaSweeperConf,
    pruner_presets,
    sampler_presets,
)

__all__ = ["LightningRegOptunaSweeperConf", "PROVIDER"]

PROVIDER = "lightning-reg"


_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="lightning_reg_optuna", node=LightningRegOptunaSweeperConf, provider=PROVIDER)
for _name, _node in sampler_presets().items():
    _cs.store(group=SAMPLER_GROUP, name=_name, node=_node, package="hydra.sweeper.sampler", provider=PROVIDER)
for _name, _pnode in pruner_presets().items():
    _cs.store(group=PRUNER_GROUP, name=_name, node=_pnode, package="hydra.sweeper.pruner", provider=PROVIDER)
