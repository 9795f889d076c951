"""DataModules on tiny data in the real on-disk formats, configs, the entry point, preview and benchmark."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from lightning_reg.app.train import CONF_DIR, train
from lightning_reg.data import (
    CIFAR10DataModule,
    DeviceResidentLoader,
    DigitsDataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    with_augmentation,
)
from lightning_reg.errors import ConfigError
from lightning_reg.models import CNNClassifier

from data_factories import make_cifar10, make_image_folder, make_mnist
from helpers import REPO, run_ddp_script

QUIET = dict(
    accelerator="cpu", enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False
)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_mnist(root)
    make_mnist(root, "FashionMNIST", seed=5)
    make_cifar10(root)
    make_image_folder(root / "images")
    return root


def test_every_format_loads_through_torchvision(data_root: Path) -> None:
    cases = [
        (MNISTDataModule(data_dir=str(data_root)), (1, 28, 28), 10, 60),
        (FashionMNISTDataModule(data_dir=str(data_root)), (1, 28, 28), 10, 60),
        (CIFAR10DataModule(data_dir=str(data_root), check_integrity=False, val_split=20), (3, 32, 32), 10, 40),
        (ImageFolderDataModule(data_dir=str(data_root / "images")), (3, 20, 16), 3, 12),
    ]
    for dm, shape, classes, n_test in cases:
        assert dm.input_shape == shape and dm.num_classes == classes  # known before setup (train.py needs them)
        dm.setup("fit")
        x, y = next(iter(dm.train_dataloader()))
        assert tuple(x.shape[1:]) == shape and x.dtype == torch.uint8
        assert len(dm.data_test.y) == n_test
        assert int(y.max()) < classes
    # CIFAR's pickled rows are R, G, B planes: the factory's bright square is 220 in every channel.
    cifar = cases[2][0]
    assert (cifar.data_train.x == 220).any(dim=(2, 3)).all()


def test_val_split_fraction_or_count_seeded_and_stratified(data_root: Path) -> None:
    dm = MNISTDataModule(data_dir=str(data_root), val_split=0.1, seed=3)
    dm.setup("fit")
    assert len(dm.data_val.y) == 20 and len(dm.data_train.y) == 180
    assert torch.bincount(dm.data_val.y, minlength=10).tolist() == [2] * 10  # 20 per class in the factory
    again = MNISTDataModule(data_dir=str(data_root), val_split=0.1, seed=3)
    again.setup("fit")
    assert torch.equal(dm.data_val.x, again.data_val.x)
    other = MNISTDataModule(data_dir=str(data_root), val_split=0.1, seed=4)
    other.setup("fit")
    assert not torch.equal(dm.data_val.x, other.data_val.x)
    counted = MNISTDataModule(data_dir=str(data_root), val_split=37)
    counted.setup("fit")
    assert len(counted.data_val.y) == 37
    with pytest.raises(ConfigError, match=r"val_split.*got 200"):
        MNISTDataModule(data_dir=str(data_root), val_split=200).setup("fit")
    with pytest.raises(ConfigError, match=r"val_split.*got -0.1"):
        MNISTDataModule(data_dir=str(data_root), val_split=-0.1)


def test_normalization_uses_training_split_stats_on_every_split(data_root: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(data_root), check_integrity=False, normalize=True)
    dm.setup("fit")
    train = dm.data_train.x.float() / 255
    assert torch.allclose(dm.standardizer.mean, train.mean((0, 2, 3)), atol=1e-5)
    out = dm.on_after_batch_transfer((dm.data_train.x, dm.data_train.y), 0)[0]
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    test = dm.on_after_batch_transfer((dm.data_test.x, dm.data_test.y), 0)[0]
    assert torch.allclose(
        test,
        (dm.data_test.x.float() / 255 - dm.standardizer.mean.view(1, 3, 1, 1)) / dm.standardizer.std.view(1, 3, 1, 1),
        atol=1e-5,
    )
    given = MNISTDataModule(data_dir=str(data_root), mean=[0.5], std=[0.25])
    given.setup("fit")
    assert given.standardizer.mean.tolist() == [0.5] and given.standardizer.std.tolist() == [0.25]


def test_missing_data_is_a_config_error_naming_path_and_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"expected .*nowhere/MNIST/raw/train-images-idx3-ubyte.*download=true"):
        MNISTDataModule(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"cifar-10-batches-py.*download=true"):
        CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"`data_dir` must name the folder.*got None"):
        FashionMNISTDataModule(data_dir=None)
    with pytest.raises(ConfigError, match=r"expected image class folders under .*/train"):
        ImageFolderDataModule(data_dir=str(tmp_path))
    (tmp_path / "train" / "only").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"at least 2 class folders.*\['only'\]"):
        ImageFolderDataModule(data_dir=str(tmp_path))


def test_cifar_md5_check_is_on_by_default(data_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"corrupted.*check_integrity=false"):
        CIFAR10DataModule(data_dir=str(data_root)).setup("fit")


def test_zca_on_a_data_set_too_small_to_fit_is_a_config_error(data_root: Path) -> None:
    dm = MNISTDataModule(data_dir=str(data_root), augment={"zca_whitening": True})  # 180 images < 784 pixels
    with pytest.raises(ConfigError, match=r"zca_whitening.*784.*180 images"):
        dm.setup("fit")


def test_device_resident_batches_cover_each_rank_shard_and_reshuffle() -> None:
    x, y = torch.arange(50.0).view(50, 1), torch.arange(50)
    epoch = [0]
    loaders = [
        DeviceResidentLoader(x, y, 8, shuffle=True, seed=1, rank=r, world_size=2, epoch_fn=lambda: epoch[0])
        for r in (0, 1)
    ]
    first = [torch.cat([b[1] for b in lo]) for lo in loaders]
    assert len(first[0]) == len(first[1]) == 25 and not set(first[0].tolist()) & set(first[1].tolist())
    epoch[0] = 1
    assert not torch.equal(torch.cat([b[1] for b in loaders[0]]), first[0])


class PlainCNN(pl.LightningModule):
    """A user's module whose loss takes class indices only (no accepts_soft_targets)."""

    def __init__(self, channels: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes)
        )
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_mixers_with_a_module_without_soft_targets_fail_before_training(data_root: Path) -> None:
    dm = MNISTDataModule(data_dir=str(data_root), augment={"mixup_alpha": 0.2})
    model = PlainCNN()
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **QUIET)
    with pytest.raises(ConfigError, match=r"PlainCNN does not declare `accepts_soft_targets = True`"):
        trainer.fit(model, datamodule=dm)
    assert model.steps == 0


@pytest.mark.parametrize("augment_on", ["device", "cpu"])
def test_training_with_augmentation_and_device_resident_data(data_root: Path, augment_on: str) -> None:
    resident = augment_on == "device"
    dm = CIFAR10DataModule(
        data_dir=str(data_root),
        check_integrity=False,
        batch_size=32,
        normalize=True,
        device_resident=resident,
        augment={
            "augment_on": augment_on,
            "crop_padding": 4,
            "horizontal_flip": True,
            "erasing_prob": 0.5,
            "cutmix_alpha": 1.0,
        },
    )
    model = CNNClassifier(
        input_shape=dm.input_shape, num_classes=10, conv_channels=[4], pool_after=[0], dense_sizes=[8]
    )
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, **QUIET)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert isinstance(trainer.train_dataloader, DeviceResidentLoader) == resident


def test_datamodule_state_survives_a_weights_only_checkpoint(data_root: Path) -> None:
    aug = {"rotation_range": 10, "featurewise_center": True, "featurewise_std_normalization": True}
    dm = MNISTDataModule(data_dir=str(data_root), augment=aug, seed=7)
    dm.setup("fit")
    x, y = dm.data_train.x[:8], dm.data_train.y[:8]
    dm.augment_training_batch(x, y)  # advance the stream
    buf = io.BytesIO()
    torch.save(dm.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = MNISTDataModule(data_dir=str(data_root), augment=aug, seed=7)
    fresh.load_state_dict(state)
    fresh.setup("fit")
    assert torch.equal(fresh.standardizer.mean, dm.standardizer.mean)
    assert torch.equal(fresh.augment_training_batch(x, y)[0], dm.augment_training_batch(x, y)[0])


def test_with_augmentation_wraps_a_users_datamodule() -> None:
    class UserData(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.x, self.y), batch_size=16)

    dm = with_augmentation(UserData(), {"rotation_range": 15, "mixup_alpha": 0.2}, num_classes=10)
    batches = []

    class Spy(CNNClassifier):
        def training_step(self, batch, batch_idx):
            batches.append(batch)
            return super().training_step(batch, batch_idx)

    model = Spy(input_shape=(1, 8, 8), num_classes=10, conv_channels=[4], padding=1, pool_after=[0], dense_sizes=[8])
    pl.Trainer(max_steps=2, **QUIET).fit(model, datamodule=dm)
    x, y = batches[0]
    assert y.shape == (16, 10) and torch.allclose(y.sum(1), torch.ones(16))
    assert not torch.allclose(x, dm.x[:16])  # augmented, not the user's raw batch
    with pytest.raises(ConfigError, match="already has AugmentationMixin"):
        with_augmentation(dm)


def test_digits_keeps_its_arguments_and_gains_augmentation() -> None:
    plain = DigitsDataModule(batch_size=32, seed=0, normalize=True)
    plain.setup("fit")
    x, _ = next(iter(plain.train_dataloader()))
    assert x.shape[1:] == (1, 8, 8) and abs(float(plain.data_train.tensors[0].mean())) < 1e-5
    aug = DigitsDataModule(augment={"augment_on": "cpu", "rotation_range": 20, "erasing_prob": 0.5})
    aug.setup("fit")
    xa, _ = next(iter(aug.train_dataloader()))
    assert xa.dtype == torch.float32 and xa.shape[1:] == (1, 8, 8)


CONF = Path(CONF_DIR)


# What each data config gives on the data generated below: the shape of one input (images: C, H, W; tokens: the
# sequence length) and the number of classes.
EXPECTED_DATA = {
    "cifar10": ((3, 32, 32), 10),
    "digits": ((1, 8, 8), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "image_folder": ((3, 20, 16), 3),  # make_image_folder: 20x16 RGB, classes cat, dog, fox
    "mnist": ((1, 28, 28), 10),
    "synthetic_tokens": ((16,), 3),  # length 16, 3 classes in conf/data/synthetic_tokens.yaml
}


def test_every_data_config_has_its_expected_values() -> None:
    assert sorted(p.stem for p in (CONF / "data").glob("*.yaml")) == sorted(EXPECTED_DATA)


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "data").glob("*.yaml")))
def test_every_data_config_composes_and_instantiates(compose_cfg, tmp_path: Path, data: str) -> None:
    make_mnist(tmp_path / "data")
    make_mnist(tmp_path / "data", "FashionMNIST")
    make_cifar10(tmp_path / "data")
    make_image_folder(tmp_path / "data" / "train_root")
    overrides = [f"data={data}"]
    if data == "cifar10":
        overrides += ["data.check_integrity=false", "data.val_split=0.1"]
    cfg = compose_cfg(*overrides)
    if data == "image_folder":
        cfg.data.data_dir = str(tmp_path / "data" / "train_root")
    dm = instantiate(cfg.data, _convert_="all")
    shape, classes = EXPECTED_DATA[data]
    assert dm.num_classes == classes
    if data != "synthetic_tokens":  # known before setup: the models are built from it
        assert tuple(dm.input_shape) == shape
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert tuple(x.shape[1:]) == shape
    if data == "synthetic_tokens":  # token ids
        assert x.dtype == torch.long and 0 <= int(x.min()) and int(x.max()) < dm.vocab_size == 96
    else:
        assert x.is_floating_point() or x.dtype == torch.uint8
    assert y.dtype == torch.long and 0 <= int(y.min()) and int(y.max()) < classes


@pytest.mark.parametrize("augment", sorted(p.stem for p in (CONF / "augment").glob("*.yaml")))
def test_every_augment_preset_composes_instantiates_and_runs(compose_cfg, augment: str) -> None:
    data = ["data.train_subset=200"] if augment == "zca" else []
    cfg = compose_cfg(f"augment={augment}", *data)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    xa, ya = dm.augment_training_batch(x, y)
    if augment == "augmix_jsd":  # (N, 3 views, C, H, W) from the loader: 3N split-major rows after transfer
        assert x.shape[1] == 3 and xa.shape == (3 * len(x), *x.shape[2:]) and torch.equal(ya, y.repeat(3))
    else:
        assert xa.shape == x.shape
    assert torch.isfinite(xa).all()
    if augment in ("mixup", "cutmix"):
        assert ya.shape == (len(y), 10)


def test_entry_point_trains_mnist_with_keras_seed_and_digits_with_mixup(compose_cfg, tmp_path: Path) -> None:
    make_mnist(tmp_path / "data")
    cfg = compose_cfg(
        "data=mnist",
        "augment=keras_seed",
        "trainer=debug",
        "logger=none",
        "data.batch_size=32",
        output_dir=tmp_path / "mnist",
    )
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["global_step"] == 6
    assert summary["config"]["data"]["augment"]["rotation_range"] == 20.0
    cfg = compose_cfg("augment=mixup", "trainer=debug", "logger=none", output_dir=tmp_path / "digits")
    summary = train(cfg)
    assert summary["status"] == "completed" and "test/acc" in summary["test"]


def test_real_mnist_subset(mnist_root: Path) -> None:
    dm = MNISTDataModule(
        data_dir=str(mnist_root), normalize=True, augment={"rotation_range": 20, "width_shift_range": 0.2}
    )
    dm.setup("fit")
    assert (len(dm.data_train.y), len(dm.data_val.y), len(dm.data_test.y)) == (6300, 700, 3000)
    assert 0.12 < float(dm.standardizer.mean) < 0.15  # MNIST's mean intensity is 0.13
    x, y = next(iter(dm.train_dataloader()))
    xa, _ = dm.augment_training_batch(x, y)
    assert xa.shape == (128, 1, 28, 28)


def test_preview_writes_a_labelled_png_grid_of_enlarged_digits(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from lightning_reg.app.preview import main

    out = tmp_path / "grid.png"
    assert main(["augment=keras_seed", "--out", str(out), "--images", "3", "--draws", "4"]) == 0
    with Image.open(out) as img:
        img.load()
        text, (width, height), pixels = dict(img.text), img.size, np.asarray(img.convert("L"))
    # Was 52x32 (5 x 3 cells of 8x8 with 2-pixel padding, no labels). Now 64x64 cells, 4-pixel gaps, a wider gap
    # before the draws, 8-pixel margins, and a header for the title and the column labels above the cells.
    assert width == 8 + 5 * 64 + 3 * 4 + 20 + 8
    header = height - 8 - (3 * 64 + 2 * 4) - 8
    assert header >= 30
    assert text["Columns"] == "original | draw 1 | draw 2 | draw 3 | draw 4"
    assert text["Title"].startswith("DigitsDataModule, augment: ")
    for option in ("rotation_range=20", "width_shift_range=0.2", "height_shift_range=0.2", "horizontal_flip=True"):
        assert option in text["Title"]
    # The labels are drawn: dark pixels in the header band, none in the margin above it.
    assert (pixels[8 : 8 + header] < 100).sum() > 100 and (pixels[:6] > 250).all()
    # The originals' column is set apart: a grey line in the middle of the wider gap, along the cells.
    line = pixels[8 + header :, 8 + 64 + 10]
    assert ((line > 100) & (line < 160)).mean() > 0.9
    assert main(["augment=keras_seed", "data.augment.rotation_range=-1", "--out", str(out)]) == 2


def test_preview_cells_are_nearest_neighbour_enlargements() -> None:
    import numpy as np

    from lightning_reg.app.preview import grid_layout, render_grid

    tiles = torch.rand(2 * 3, 1, 8, 8)
    img = render_grid(tiles, 2, 3, "augment: none", ["original", "draw 1", "draw 2"])
    pixels = np.asarray(img.convert("L")).astype(int)
    layout = grid_layout(2, 3, 64, 64, 0)
    header = img.size[1] - layout.height
    assert img.size[0] == layout.width
    for i in range(6):
        row, col = divmod(i, 3)
        x, y = layout.cell_origin(row, col)
        cell = pixels[header + y : header + y + 64, x : x + 64]
        expected = (tiles[i, 0] * 255).round().numpy().astype(int).repeat(8, 0).repeat(8, 1)
        assert np.abs(cell - expected).max() <= 1, (row, col)


def test_benchmark_quick_smoke() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "augment_throughput.py"),
            "--quick",
            "--workers",
            "0",
            "--batch",
            "64",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio device/cpu: MNIST" in proc.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_device_augmentation_under_ddp_draws_differently_per_rank(tmp_path: Path) -> None:
    run_ddp_script(
        """
        import torch, lightning.pytorch as pl
        from lightning_reg.data import DigitsDataModule
        from lightning_reg.models import CNNClassifier

        seen = {}

        class Record(CNNClassifier):
            def training_step(self, batch, batch_idx):
                if batch_idx == 0:
                    seen["x"] = batch[0].detach().clone()
                return super().training_step(batch, batch_idx)

        dm = DigitsDataModule(batch_size=16, seed=0, augment={"rotation_range": 30, "horizontal_flip": True,
                                                              "mixup_alpha": 0.4})
        model = Record(input_shape=(1, 8, 8), num_classes=10, conv_channels=[4], padding=1, pool_after=[0], dense_sizes=[8])
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=3, limit_val_batches=1,
                             enable_progress_bar=False, logger=False, enable_checkpointing=False,
                             enable_model_summary=False)
        trainer.fit(model, datamodule=dm)
        gen = dm._augment_generator
        torch.save({"seed": gen.initial_seed(), "draw": torch.rand(4, generator=gen), "x": seen["x"],
                    "steps": trainer.global_step}, OUT / f"rank{trainer.global_rank}.pt")
        """,
        tmp_path,
    )
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 3
    assert r0["seed"] != r1["seed"]
    assert not torch.equal(r0["draw"], r1["draw"])


def test_own_datamodule_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["example", "--data-dir", str(tmp_path), "--steps", "2"])
    runpy.run_path(str(REPO / "examples" / "own_datamodule_augmentation.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "MyAugmentedDataModule: val/acc=" in out and "AugmentedMyDataModule: val/acc=" in out
