"""A checkpoint handed to ``ckpt_path`` is checked before the first training step: readable, a Lightning
checkpoint, the same architecture, and optimizer state of the configured optimizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_reg.app.train import train
from lightning_reg.errors import ConfigError


@pytest.fixture(scope="module")
def adam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from lightning_reg.app.train import CONF_DIR

    out = tmp_path_factory.mktemp("adam")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["trainer=debug", "test=false"])
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "run")
        cfg.paths.data_dir = str(out / "data")
    train(cfg)
    return out / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["optimizer=sgd"], "optimizer 0 state is not SGD's: it lacks dampening, momentum, nesterov"),
        (["model=cnn"], "holds a different architecture: missing in the checkpoint: net"),
        (["model.hidden_sizes=[32]"], "holds a different architecture: shapes differ"),
    ],
)
def test_a_checkpoint_this_run_cannot_resume_is_refused_before_fitting(
    compose_cfg, adam_checkpoint: Path, tmp_path: Path, overrides: list[str], match: str
) -> None:
    cfg = compose_cfg("trainer=debug", f"ckpt_path={adam_checkpoint}", *overrides, output_dir=tmp_path / "new")
    with pytest.raises(ConfigError, match=match):
        train(cfg)
    assert not (tmp_path / "new" / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a checkpoint at all", "is not a readable checkpoint"),
        (None, "is not a readable checkpoint"),  # the real checkpoint, truncated to half its size
    ],
)
def test_a_corrupt_or_truncated_checkpoint_is_a_clear_error(
    compose_cfg, adam_checkpoint: Path, tmp_path: Path, content: bytes | None, match: str
) -> None:
    bad = tmp_path / "bad.ckpt"
    data = adam_checkpoint.read_bytes()
    bad.write_bytes(content if content is not None else data[: len(data) // 2])
    cfg = compose_cfg("trainer=debug", f"ckpt_path={bad}", output_dir=tmp_path / "new")
    with pytest.raises(ConfigError, match=match):
        train(cfg)


def test_a_tensor_file_that_is_not_a_lightning_checkpoint(compose_cfg, tmp_path: Path) -> None:
    import torch

    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, weights)
    cfg = compose_cfg("trainer=debug", f"ckpt_path={weights}", output_dir=tmp_path / "new")
    with pytest.raises(ConfigError, match="is not a Lightning checkpoint: it has no `state_dict`"):
        train(cfg)


def test_the_matching_checkpoint_still_resumes(compose_cfg, adam_checkpoint: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "trainer=debug",
        "trainer.max_epochs=3",
        "test=false",
        f"ckpt_path={adam_checkpoint}",
        output_dir=tmp_path / "new",
    )
    assert train(cfg)["epochs_completed"] == 3
