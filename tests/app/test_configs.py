"""Every file in conf/ composes and instantiates (data, model, optimizer, scheduler, callbacks, trainer)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightning_reg._lightning_internals import missing_target_reason
from lightning_reg.app.train import CONF_DIR, build
from lightning_reg.errors import ConfigError
from lightning_reg.optim import SchedulerSpec

from data_factories import make_cifar10, make_image_folder, make_mnist

CONF = Path(CONF_DIR)

# Options that need a different input than the default digits data to build a valid network.
EXTRA_OVERRIDES: dict[str, list[str]] = {
    "model/cnn_cifar10": ["model.input_shape=[3,32,32]"],
    # The text pair: a token data set and a text model go together.
    "model/hf_bert_tiny": ["data=synthetic_tokens"],
    "data/synthetic_tokens": ["model=hf_bert_tiny"],
}
# GPU trainer configs are instantiated on the CPU here when no GPU is present: everything else in them
# (strategy, devices, sync_batchnorm...) is still checked by Lightning's Trainer.
GPU_TRAINERS = {"gpu", "ddp"}


def _options() -> list[tuple[str, str]]:
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if rel.parts == ("train.yaml",):
            continue
        out.append((str(rel.parent), rel.stem))
    return out


def _override(group: str, option: str) -> list[str]:
    if group == "callbacks":
        return [f"callbacks=[{option}]"]
    if group.startswith("variant/"):
        # A variant belongs to its experiment, which puts its group in the defaults list.
        experiment = group.split("/", 1)[1]
        return [f"experiment={experiment}", f"{group}={option}"]
    return [f"{group}={option}"]


def test_every_conf_file_is_collected() -> None:
    groups = {g for g, _ in _options()}
    for required in (
        "data",
        "model",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "hparams_search",
    ):
        assert required in groups


@pytest.mark.parametrize(("group", "option"), _options(), ids=[f"{g}/{o}" for g, o in _options()])
def test_config_composes_and_instantiates(compose_cfg, tmp_path: Path, group: str, option: str) -> None:
    overrides = _override(group, option) + EXTRA_OVERRIDES.get(f"{group}/{option}", [])
    if group.startswith("hydra"):
        pytest.skip("hydra/* configs are composed by the sweep tests")
    if group == "trainer" and option in GPU_TRAINERS and not torch.cuda.is_available():
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1"]
    cfg = compose_cfg(*overrides)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    target = str(cfg.data.get("_target_", ""))
    if target.endswith(("MNISTDataModule", "CIFAR10DataModule", "ImageFolderDataModule")):
        # On-disk data sets check their files when built: give them tiny generated ones in the real formats.
        data = Path(cfg.data.data_dir)
        if target.endswith("FashionMNISTDataModule"):
            make_mnist(data, folder="FashionMNIST", n_train=60, n_test=20)
        elif target.endswith("MNISTDataModule"):
            make_mnist(data, n_train=60, n_test=20)
        elif target.endswith("CIFAR10DataModule"):
            make_cifar10(data, per_batch=12, n_test=12)
            cfg.data.check_integrity = False  # generated files cannot match CIFAR's published checksums
        else:
            make_image_folder(data)
    assert isinstance(cfg, DictConfig)
    too_new = [
        why
        for cb in (cfg.get("callbacks") or {}).values()
        if cb and (why := missing_target_reason(str(cb.get("_target_", ""))))
    ]
    if too_new:  # e.g. callbacks/ema on Lightning 2.5: one clear error instead of an import error
        with pytest.raises(ConfigError, match=re.escape(too_new[0])):
            build(cfg)
        return
    parts = build(cfg)
    # The optimizer and scheduler configs really build against the model's parameters.
    if group == "optimizer":
        opt_cfg = parts.model.configure_optimizers()
        assert isinstance(opt_cfg, (torch.optim.Optimizer, dict))
        opt = opt_cfg["optimizer"] if isinstance(opt_cfg, dict) else opt_cfg
        assert type(opt).__name__.lower().startswith(option[:4]) or option == "momentum"
    if group == "scheduler" and option != "none":
        spec = instantiate(cfg.scheduler, _convert_="all")
        assert isinstance(spec, SchedulerSpec)
        opt = torch.optim.SGD(parts.model.parameters(), lr=0.1)
        built = spec.build(opt, total_steps=100)
        assert isinstance(
            built["scheduler"], (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        )
    if group == "callbacks" and option not in ("none",):
        names = {type(cb).__name__ for cb in parts.trainer.callbacks}
        assert len(cfg.callbacks) >= 1
        for sub in cfg.callbacks.values():
            assert sub._target_.rsplit(".", 1)[-1] in names


@pytest.mark.parametrize("experiment", ["seed001_cifar10_cnn", "seed002_random_search", "seed003_mnist_mlp"])
def test_source_material_experiments_run_as_the_source_did_in_keras(compose_cfg, experiment: str) -> None:
    cfg = compose_cfg(f"experiment={experiment}")
    assert cfg.model.init == "keras"  # glorot-uniform kernels, zero biases
    assert cfg.data.normalize is False  # x / 255 only
    assert cfg.optimizer._target_ == "lightning_reg.optim.KerasAdam" and cfg.optimizer.eps == 1e-7


def test_seed003_zca_uses_the_sources_formula_and_the_normalized_experiment_keeps_torchs_setup(compose_cfg) -> None:
    source = compose_cfg("experiment=seed003_mnist_mlp", "variant/seed003_mnist_mlp=dropout_zca")
    assert (source.data.augment.zca_formula, source.data.augment.zca_pixel_mean) == ("classic", False)
    normalized = compose_cfg("experiment=seed003_mnist_mlp_normalized", "variant/seed003_mnist_mlp=dropout_zca")
    assert normalized.model.init == "torch" and normalized.data.normalize is True
    assert normalized.optimizer._target_ == "torch.optim.Adam"
    assert normalized.data.augment.zca_whitening and normalized.data.augment.zca_pixel_mean
    for key in ("batch_size", "val_split"):
        assert normalized.data[key] == source.data[key]
    assert normalized.model.hidden_sizes == source.model.hidden_sizes and normalized.model.dropout == 0.25
    sweeps = [
        (CONF / "experiment" / f"{e}.yaml").read_text().split("params:")[1]
        for e in ("seed003_mnist_mlp", "seed003_mnist_mlp_normalized")
    ]
    assert sweeps[0] == sweeps[1]  # the same six variants and three seeds
