"""Test models and probes for ScheduledDropout (importable from DDP scripts: ``from scheduled_dropout_helpers import ...``)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from helpers import TinyModule


class DropPath(nn.Module):
    """timm-style stochastic depth, written here so the test does not depend on timm: rate in ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.drop_path = DropPath(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(x))


class ResidualModule(TinyModule):
    """A residual MLP with one DropPath per block (no nn.Dropout anywhere)."""

    def __init__(self, dim: int = 16, width: int = 32, classes: int = 4, blocks: int = 4, lr: float = 0.05) -> None:
        super().__init__(dim=dim, classes=classes, lr=lr)
        self.net = nn.Sequential(
            nn.Linear(dim, width), *[ResBlock(width) for _ in range(blocks)], nn.Linear(width, classes)
        )


class ManualModule(TinyModule):
    """TinyModule with manual optimization: one optimizer step every other batch."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.manual_backward(loss)
        if batch_idx % 2 == 1:
            opt.step()
            opt.zero_grad()
        return loss


class LateBuiltModule(TinyModule):
    """Builds its layers in ``configure_model`` (as large-model code does), so they do not exist at setup."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = None

    def configure_model(self) -> None:
        if self.net is None:
            self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def _rate_attr(module: nn.Module) -> str | None:
    # Independent of lightning_reg.core.dropout on purpose: the probe checks what the callback did.
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "p"
    if isinstance(getattr(module, "drop_prob", None), float):
        return "drop_prob"
    return None


class RateProbe(pl.Callback):
    """Records the rate of every dropout-like module each time it runs forward in training mode.

    One record per (module, training forward): epoch, batch index within the epoch, global_step and p.
    Registered at ``on_fit_start``, so it also sees modules that ScheduledDropout injected at setup.
    """

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.eval_forwards = 0
        self._handles: list[Any] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, module in pl_module.named_modules():
            attr = _rate_attr(module)
            if attr is None:
                continue

            def hook(mod, args, name=name, attr=attr):
                if not mod.training:
                    self.eval_forwards += 1
                    return
                self.records.append(
                    {
                        "epoch": trainer.current_epoch,
                        "batch": trainer.fit_loop.epoch_loop.batch_idx,
                        "step": trainer.global_step,
                        "name": name,
                        "p": float(getattr(mod, attr)),
                    }
                )

            self._handles.append(module.register_forward_pre_hook(hook))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def by_module(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.records:
            out.setdefault(r["name"], []).append(r)
        return out


class ReseedEachBatch(pl.Callback):
    """Makes the RNG a function of (epoch, batch) for resume tests.

    Lightning checkpoints do not hold the RNG state, and an uninterrupted run draws once more from the
    global RNG than a resumed one (it re-creates the DataLoader iterator after on_train_epoch_start), so
    dropout masks after a resume differ unless the RNG is pinned like this.
    """

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        torch.manual_seed(1000 * trainer.current_epoch + batch_idx)


def trainer_kwargs(**overrides: Any) -> dict[str, Any]:
    kw: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2,
        deterministic=True,
    )
    kw.update(overrides)
    return kw
