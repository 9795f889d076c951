"""Test building blocks shared by all test modules: tiny real models, data, and a 2-process CPU DDP runner.

DDP tests run a generated script with ``strategy="ddp"`` (Lightning's subprocess launcher re-runs the
script for rank 1), exactly as users run it. The script writes what each rank saw into ``out_dir`` for
the test to compare. Never run ``strategy="ddp"`` inside the pytest process: the launcher would re-run
pytest itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[1]
#: tests/ and its layer folders: a script run by a test imports its helpers and test modules from any of them.
TEST_DIRS = [
    REPO / "tests",
    *sorted(
        d
        for d in ((REPO / "tests").iterdir() if (REPO / "tests").is_dir() else [])
        if d.is_dir() and d.name != "fixtures" and not d.name.startswith((".", "_"))
    ),
]


def make_blobs(n: int = 256, dim: int = 16, classes: int = 4, seed: int = 0) -> TensorDataset:
    """A small, learnable, deterministic classification set."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 2.0
    y = torch.randint(0, classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, dim, generator=g)
    return TensorDataset(x, y)


class TinyModule(pl.LightningModule):
    """A user-style LightningModule: Linear-ReLU-(Dropout)-Linear with SGD, logging train/val loss and acc."""

    def __init__(
        self, dim: int = 16, hidden: int = 32, classes: int = 4, dropout: float | None = None, lr: float = 0.1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(dim, hidden), nn.ReLU()]
        if dropout is not None:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, classes))
        self.net = nn.Sequential(*layers)
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.log("val/acc", (logits.argmax(-1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders(n: int = 256, batch_size: int = 32, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    train = make_blobs(n, seed=seed)
    val = make_blobs(n // 4, seed=seed + 1)
    return DataLoader(train, batch_size=batch_size, shuffle=False), DataLoader(val, batch_size=batch_size)


LoaderPair = tuple[DataLoader, DataLoader | None]


def fit(
    model: pl.LightningModule,
    *callbacks: pl.Callback,
    max_epochs: int,
    data: LoaderPair | Callable[[], LoaderPair] | None = None,
    ckpt_path: str | Path | None = None,
    **trainer_kw: Any,
) -> pl.Trainer:
    """Fit ``model`` with ``callbacks`` in a quiet one-CPU Trainer and return the Trainer: the tests' one fit helper.

    Trainer defaults, each overridden by ``trainer_kw``: CPU, one device, no logger, no progress bar or model summary,
    no sanity validation, and checkpointing only when a ``ModelCheckpoint`` is among ``callbacks``. ``data`` is the
    ``(train, val)`` loaders (``val`` may be None), or a function that makes them for each fit; by default
    :func:`loaders` (256 blobs in 8 batches of 32, and 64 for validation). A test module binds its own data and run
    length with ``functools.partial``; tests/reliability_registry.py and the others that add callbacks or a logger
    of their own wrap it.
    """
    kw: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kw.update(trainer_kw)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=list(callbacks), **kw)
    train, val = (data() if callable(data) else data) if data is not None else loaders()
    trainer.fit(model, train, val, ckpt_path=str(ckpt_path) if ckpt_path else None)
    return trainer


def run_ddp_script(body: str, tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``body`` as a script under 2-process CPU DDP conditions and return the finished process.

    ``body`` is ordinary Python; it can ``from helpers import ...`` and should build a
    ``pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", ...)``. ``OUT`` (a Path) is defined for it.
    Raises AssertionError with the script's output if it fails.

    Every rank ends by destroying the process group, as ``python -m lightning_reg.train`` does: a process that
    exits with it alive can abort in gloo's worker threads during interpreter shutdown ("terminate called
    without an active exception", exit -6) after the script itself succeeded.
    """
    script = tmp_path / "ddp_script.py"
    script.write_text(
        "import sys, pathlib\n"
        f"sys.path[:0] = {[str(d) for d in TEST_DIRS]!r}\n"
        f"OUT = pathlib.Path({str(tmp_path)!r})\n" + textwrap.dedent(body) + "\n"
        "import torch.distributed as _dist\n"
        "if _dist.is_available() and _dist.is_initialized():\n"
        "    _dist.destroy_process_group()\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"DDP script failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


class UserDigitsModule(pl.LightningModule):
    """A user's own LightningModule for 8x8 digits, knowing nothing of lightning_reg (own optimizer)."""

    def __init__(self, hidden: int = 32, lr: float = 0.01) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.lr = lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", (logits.argmax(-1) == y).float().mean())
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._loss(batch, "val")

    def test_step(self, batch, batch_idx):
        self._loss(batch, "test")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, {name: float})``, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((int(step if step is not None else -1), {k: float(v) for k, v in metrics.items()}))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(s, m[key]) for s, m in self.records if key in m]


class KillAtEpoch(pl.Callback):
    """``kill -9`` of its own process at the start of ``epoch``: a run that dies without any cleanup."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def _no_test_step_module() -> type:
    from lightning_reg.models import MLPClassifier

    class NoTestStepModule(MLPClassifier):
        """The reference MLP without a ``test_step`` (a user's module that never wrote one)."""

        test_step = pl.LightningModule.test_step

    NoTestStepModule.__module__ = __name__
    return NoTestStepModule


NoTestStepModule = _no_test_step_module()
