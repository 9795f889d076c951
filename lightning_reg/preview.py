"""``python -m lightning_reg.preview <overrides>``: a PNG grid of original and augmented training images.

Takes the same Hydra overrides as ``lightning_reg.train`` (``data=... augment=... data.augment.x=...``)
plus ``--out PATH`` (default ``augment_preview.png``), ``--images N`` (rows, default 8) and
``--draws K`` (augmented columns per image, default 7). Column 0 holds the originals. Standardized
images (normalize, ZCA) are rescaled to [0, 1] per image so they stay visible.

Example:
    python -m lightning_reg.preview data=mnist data.data_dir=/work/shared/data augment=keras_seed --out grid.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from lightning_reg.augment.standardize import as_float_images
from lightning_reg.errors import ConfigError
from lightning_reg.train import CONF_DIR, _instantiate


def augmented_grid(datamodule, images: int = 8, draws: int = 7, seed: int = 0) -> torch.Tensor:  # noqa: ANN001
    """``(images * (draws + 1), C, H, W)`` tiles in row-major order: each row an original then its draws.

    Uses the DataModule's own path: the per-sample cpu transform or the batched device-path call (with
    standardization and mixers), so the grid shows exactly what training sees.
    """
    from lightning_reg.augment.pipeline import build_cpu_transform

    datamodule.setup("fit")
    data = datamodule.data_train
    x, y = (
        (data[0], data[1])
        if isinstance(data, tuple)
        else (data.tensors[0], data.tensors[1])
        if hasattr(data, "tensors")
        else (data.x, data.y)
    )
    x, y = x[:images], y[:images]
    cfg = datamodule.augment_config
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    columns = [as_float_images(x)]
    for _ in range(draws):
        if cfg.augment_on == "cpu" and not cfg.is_identity:
            t = build_cpu_transform(cfg, x.shape[-2], x.shape[-1])
            batch = torch.stack([t(img) for img in x])
            batch = datamodule.standardizer(batch)
            if cfg.has_mixing:
                from lightning_reg.augment.mixing import mix_batch

                batch = mix_batch(batch, y, datamodule.augment_num_classes, cfg, gen)[0]
        else:
            batch, _ = datamodule.augment_training_batch(x, y, generator=gen)
        columns.append(batch)
    if not datamodule.standardizer.is_identity:
        columns[0] = datamodule.standardizer(columns[0])
    tiles = torch.stack(columns, 1).flatten(0, 1)
    flat = tiles.flatten(1)
    lo, hi = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    if float(lo.min()) < 0 or float(hi.max()) > 1:
        tiles = (tiles - lo) / (hi - lo).clamp_min(1e-8)
    return tiles.clamp(0, 1)


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/train.yaml`` with Hydra overrides (no run directory is created)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def write_preview(overrides: Sequence[str], out: str | Path, images: int = 8, draws: int = 7, seed: int = 0) -> Path:
    """Compose, instantiate ``cfg.data`` and save the grid as a PNG; return its path."""
    from torchvision.utils import save_image

    cfg = compose_config(overrides)
    datamodule = _instantiate(cfg.data, "data")
    tiles = augmented_grid(datamodule, images, draws, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(tiles, str(out), nrow=draws + 1, padding=2, pad_value=1.0)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightning_reg.preview", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for lightning_reg.train")
    parser.add_argument("--out", default="augment_preview.png")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--draws", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = write_preview(args.overrides, args.out, args.images, args.draws, args.seed)
    except ConfigError as err:
        print(f"lightning_reg.preview: error: {err}", file=sys.stderr)
        return 2
    print(f"lightning_reg.preview: wrote {path} ({args.images} images x {args.draws} draws, column 0 = original)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
