"""``python -m lightning_reg.preview <overrides>``: a PNG grid of original and augmented training images.

Takes the same Hydra overrides as ``lightning_reg.app.train`` (``data=... augment=... data.augment.x=...``)
plus ``--out PATH`` (default ``augment_preview.png``), ``--images N`` (rows, default 8) and
``--draws K`` (augmented columns per image, default 7). Column 0 holds the originals, set apart from the
draws by a wider gap and a line; every column is labelled, and the title names the DataModule and the
augmentation options that differ from their defaults. Small images are enlarged by an integer factor
(nearest neighbour, so pixels stay sharp) to at least 64 pixels a cell: an 8x8 digit becomes 64x64.
Standardized images (normalize, ZCA) are rescaled to [0, 1] per image so they stay visible. The PNG is drawn
with Pillow (which torchvision needs anyway) and carries its title and column labels as PNG text fields.

Example:
    python -m lightning_reg.preview data=mnist data.data_dir=/work/shared/data augment=keras_seed --out grid.png
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_reg.atomic import atomic_write

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from PIL import Image

    from lightning_reg.core.augment.config import AugmentConfig

__all__ = [
    "MIN_CELL",
    "GridLayout",
    "augment_summary",
    "augmented_grid",
    "compose_config",
    "grid_layout",
    "main",
    "render_grid",
    "upscale_factor",
    "write_preview",
]

#: Cells are enlarged (by an integer factor) until their longer side is at least this many pixels.
MIN_CELL = 64


def augmented_grid(datamodule: Any, images: int = 8, draws: int = 7, seed: int = 0) -> torch.Tensor:
    """``(images * (draws + 1), C, H, W)`` tiles in row-major order: each row an original then its draws.

    Uses the DataModule's own path: the per-sample cpu transform or the batched device-path call (with
    standardization and mixers), so the grid shows exactly what training sees.
    """
    import torch

    from lightning_reg.core.augment.cpu import build_cpu_transform
    from lightning_reg.core.augment.featurewise import as_float_images

    datamodule.setup("fit")
    data = datamodule.data_train  # an ImageTensorDataset in every lightning_reg DataModule
    x, y = data.x[:images], data.y[:images]
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
                from lightning_reg.core.augment.mixers import mix_batch

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


def augment_summary(cfg: AugmentConfig) -> str:
    """The options of ``cfg`` that differ from :class:`~lightning_reg.core.augment.AugmentConfig`'s defaults.

    Example:
        >>> from lightning_reg.core.augment.config import AugmentConfig
        >>> augment_summary(AugmentConfig(rotation_range=10, horizontal_flip=True))
        'rotation_range=10, horizontal_flip=True'
        >>> augment_summary(AugmentConfig())
        'none'
    """
    default = type(cfg)()
    changed = [
        f"{f.name}={_short(getattr(cfg, f.name))}"
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(default, f.name)
    ]
    return ", ".join(changed) or "none"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def upscale_factor(height: int, width: int, min_cell: int = MIN_CELL) -> int:
    """The integer factor that brings the longer side of a ``height x width`` image to at least ``min_cell``.

    Example:
        >>> upscale_factor(8, 8), upscale_factor(28, 28), upscale_factor(32, 32), upscale_factor(224, 224)
        (8, 3, 2, 1)
    """
    return max(1, math.ceil(min_cell / max(1, height, width)))


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of the preview: where each cell, label and the originals' separator go.

    Example:
        >>> g = grid_layout(rows=3, cols=5, cell_h=64, cell_w=64, header_h=40)
        >>> g.width, g.height, g.cell_origin(0, 0), g.cell_origin(0, 1)
        (368, 256, (8, 48), (92, 48))
    """

    rows: int
    cols: int
    cell_h: int
    cell_w: int
    header_h: int
    margin: int = 8
    pad: int = 4
    separator: int = 20  # the gap between the originals and the first draw

    def column_x(self, col: int) -> int:
        extra = self.separator - self.pad if col >= 1 else 0
        return self.margin + col * (self.cell_w + self.pad) + extra

    def cell_origin(self, row: int, col: int) -> tuple[int, int]:
        """``(x, y)`` of the cell's top-left pixel."""
        return self.column_x(col), self.margin + self.header_h + row * (self.cell_h + self.pad)

    @property
    def separator_x(self) -> int:
        """The x of the vertical line between column 0 and column 1."""
        return self.column_x(0) + self.cell_w + self.separator // 2

    @property
    def width(self) -> int:
        return self.column_x(self.cols - 1) + self.cell_w + self.margin

    @property
    def height(self) -> int:
        return self.margin + self.header_h + self.rows * (self.cell_h + self.pad) - self.pad + self.margin


def grid_layout(rows: int, cols: int, cell_h: int, cell_w: int, header_h: int) -> GridLayout:
    """The :class:`GridLayout` of ``rows x cols`` cells of ``cell_h x cell_w`` pixels under a header."""
    return GridLayout(rows, cols, cell_h, cell_w, header_h)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """Greedy wrap at ", " so that each line fits ``width`` pixels (a longer single item gets its own line)."""
    lines: list[str] = []
    current = ""
    for part in text.split(", "):
        candidate = f"{current}, {part}" if current else part
        if current and draw.textlength(candidate, font=font) > width:
            lines.append(current + ",")
            current = part
        else:
            current = candidate
    return [*lines, current]


def render_grid(
    tiles: torch.Tensor, rows: int, cols: int, title: str, labels: Sequence[str], min_cell: int = MIN_CELL
) -> Image.Image:
    """Draw ``rows x cols`` tiles (``(rows * cols, C, H, W)`` in [0, 1], row-major) as one labelled RGB image.

    Tiles are enlarged by :func:`upscale_factor` with nearest-neighbour sampling; ``labels`` name the columns
    and ``title`` (wrapped to the width) heads the image; column 0 is set apart by a gap and a grey line.

    Example:
        >>> import torch
        >>> img = render_grid(torch.rand(2 * 3, 1, 8, 8), 2, 3, "augment: none", ["original", "draw 1", "draw 2"])
        >>> img.size[0] >= 3 * 64 and img.size[1] >= 2 * 64
        True
    """
    from PIL import Image, ImageDraw

    if tiles.shape[0] != rows * cols or len(labels) != cols:
        raise ValueError(f"render_grid: {tiles.shape[0]} tiles and {len(labels)} labels for {rows}x{cols} cells.")
    scale = upscale_factor(tiles.shape[-2], tiles.shape[-1], min_cell)
    big = tiles.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    if big.shape[1] == 1:
        big = big.expand(-1, 3, -1, -1)
    pixels = (big[:, :3].clamp(0, 1) * 255).round().to("cpu").byte().permute(0, 2, 3, 1).contiguous().numpy()
    cell_h, cell_w = pixels.shape[1], pixels.shape[2]
    font = _font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = math.ceil(probe.textbbox((0, 0), "Ag", font=font)[3]) + 4
    width_guess = grid_layout(rows, cols, cell_h, cell_w, 0).width - 16
    title_lines = _wrap(probe, title, font, width_guess)
    header_h = line_h * (len(title_lines) + 1) + 6
    layout = grid_layout(rows, cols, cell_h, cell_w, header_h)
    image = Image.new("RGB", (layout.width, layout.height), "white")
    draw = ImageDraw.Draw(image)
    y = layout.margin
    for line in title_lines:
        draw.text((layout.margin, y), line, fill="black", font=font)
        y += line_h
    label_y = layout.margin + header_h - line_h - 2
    for col, label in enumerate(labels):
        x = layout.column_x(col)
        shown = label
        while len(shown) > 1 and draw.textlength(shown, font=font) > cell_w + layout.pad:
            shown = shown[:-1]
        offset = max(0, (cell_w - int(draw.textlength(shown, font=font))) // 2)
        draw.text((x + offset, label_y), shown, fill="black", font=font)
    for i in range(rows * cols):
        row, col = divmod(i, cols)
        image.paste(Image.fromarray(pixels[i], "RGB"), layout.cell_origin(row, col))
    if cols > 1:
        top = layout.cell_origin(0, 0)[1]
        draw.line(
            [(layout.separator_x, top), (layout.separator_x, layout.height - layout.margin)], fill=(128,) * 3, width=2
        )
    return image


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/train.yaml`` with Hydra overrides (no run directory is created)."""
    from lightning_reg.app.config import compose_train_config

    return compose_train_config(overrides)


def write_preview(overrides: Sequence[str], out: str | Path, images: int = 8, draws: int = 7, seed: int = 0) -> Path:
    """Compose, instantiate ``cfg.data`` and save the labelled grid as a PNG; return its path."""
    from PIL.PngImagePlugin import PngInfo

    from lightning_reg.app.config import instantiate_node

    cfg = compose_config(overrides)
    datamodule = instantiate_node(cfg.data, "data")
    tiles = augmented_grid(datamodule, images, draws, seed)
    rows = tiles.shape[0] // (draws + 1)
    title = (
        f"{type(datamodule).__name__}, augment: {augment_summary(datamodule.augment_config)} (draws with seed {seed})"
    )
    labels = ["original", *(f"draw {k}" for k in range(1, draws + 1))]
    image = render_grid(tiles, rows, draws + 1, title, labels)
    info = PngInfo()
    info.add_text("Title", title)
    info.add_text("Columns", " | ".join(labels))
    info.add_text("Software", "lightning_reg.app.preview")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        image.save(fh, format="PNG", pnginfo=info)
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_reg.preview", description=(__doc__ or "").split("\n", 1)[0]
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for lightning_reg.app.train")
    parser.add_argument("--out", default="augment_preview.png", help="PNG to write (default: augment_preview.png)")
    parser.add_argument("--images", type=_positive_int, default=8, help="rows: training images shown (default 8)")
    parser.add_argument("--draws", type=_positive_int, default=7, help="augmented draws per image (default 7)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    args = parser.parse_args(argv)

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from lightning_reg.errors import ConfigError

    try:
        path = write_preview(args.overrides, args.out, args.images, args.draws, args.seed)
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        print(f"lightning_reg.preview: error: {err}", file=sys.stderr)
        return 2
    print(f"lightning_reg.preview: wrote {path} ({args.images} images x {args.draws} draws, column 0 = original)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
