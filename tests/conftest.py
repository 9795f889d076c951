"""Shared fixtures: config composition against tmp_path, and the optional real MNIST subset."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from lightning_reg.app.train import CONF_DIR

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep thread counts predictable on the 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose conf/train.yaml with overrides; paths point into tmp_path (no Hydra run dir)."""

    def _compose(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir or tmp_path / "run")
            cfg.paths.data_dir = str(tmp_path / "data")
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def mnist_root() -> Path:
    """Root holding the real MNIST subset (``<root>/MNIST/raw``); skips when ../shared/data is absent."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip("../shared/data/MNIST is not present (only the team's machines have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of a real PostgreSQL server (see tests/postgres.py); skips, or fails under CI, when none starts."""
    import postgres

    try:
        server = postgres.start()
    except RuntimeError as err:
        if os.environ.get("LIGHTNING_REG_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but could not start: {err}")
        pytest.skip(f"no PostgreSQL server: {err}")
    yield server.url
    server.stop()
