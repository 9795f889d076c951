"""The experiments' launcher preset (conf/hydra/launcher/joblib_2.yaml) and replacing it from the command line."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from lightning_reg.app.train import CONF_DIR


def hydra_node(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("train", overrides=list(overrides), return_hydra_config=True).hydra
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("experiment", ["regularizers_digits", "l2_vs_dropout"])
def test_experiments_run_two_joblib_jobs_from_the_preset(experiment: str) -> None:
    launcher = hydra_node(f"experiment={experiment}").launcher
    assert launcher.n_jobs == 2
    assert type(instantiate(launcher)).__name__ == "JoblibLauncher"


@pytest.mark.parametrize(
    "launcher, target", [("basic", "BasicLauncher"), ("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")]
)
def test_the_main_job_takes_another_launcher_from_the_command_line(launcher: str, target: str) -> None:
    # Before the preset, the experiment's own `hydra.launcher.n_jobs` made basic and slurm fail to compose.
    node = hydra_node("experiment=regularizers_digits", f"hydra/launcher={launcher}")
    assert node.launcher._target_.endswith(target)
    assert "n_jobs" not in node.launcher or node.launcher.n_jobs == -1  # joblib's own default
