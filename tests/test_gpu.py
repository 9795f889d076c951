"""GPU checks: 16-mixed AMP for every callback, penalty equivalence, device-path augmentation, 1-GPU DDP.

All skip without CUDA. Run them on a GPU machine with ``python -m pytest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_reg import WeightPenalty
from lightning_reg.core.dropout import InjectedDropout
from lightning_reg.data import with_augmentation

from helpers import TinyModule, make_blobs, run_ddp_script
from reliability_registry import BY_NAME, REGISTRY, fit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("name", [e.name for e in REGISTRY])
def test_16_mixed_amp_on_cuda(name: str) -> None:
    entry = BY_NAME[name]
    run = fit(entry, 2, accelerator="gpu", devices=1, precision="16-mixed", deterministic=False)
    entry.check(run.callbacks, run.trainer, run.model)
    assert all(torch.isfinite(v).all() for v in run.weights().values())


class InLoss(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        ws = [self.net[0].weight, self.net[-1].weight]
        return loss + 1e-3 * sum(w.abs().sum() for w in ws) + 1e-2 * sum(w.pow(2).sum() for w in ws)


def _fit_cuda(model: pl.LightningModule, callbacks: list[pl.Callback]) -> dict[str, torch.Tensor]:
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_epochs=2,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(make_blobs(256), batch_size=32))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def test_penalty_callback_equals_penalty_in_the_loss_on_cuda() -> None:
    torch.manual_seed(0)
    with_callback = _fit_cuda(TinyModule(), [WeightPenalty(l1=1e-3, l2=1e-2)])
    torch.manual_seed(0)
    in_loss = _fit_cuda(InLoss(), [])
    torch.manual_seed(0)
    bare = _fit_cuda(TinyModule(), [])
    for key in with_callback:
        torch.testing.assert_close(with_callback[key], in_loss[key], rtol=0, atol=1e-5)
    assert max(float((with_callback[k] - bare[k]).abs().max()) for k in bare) > 1e-3


class ImageData(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(64, 1, 16, 16, generator=g), torch.randint(0, 4, (64,), generator=g)
        return DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


def test_device_path_augmentation_runs_on_cuda_per_sample() -> None:
    dm = with_augmentation(
        ImageData(),
        {"rotation_range": 20, "width_shift_range": 0.1, "horizontal_flip": True, "erasing_prob": 0.5},
        seed=0,
    )
    x, y = next(iter(dm.train_dataloader()))
    x = x.cuda()
    out_a, y_a = dm.augment_training_batch(x, y.cuda(), generator=torch.Generator("cuda").manual_seed(1))
    out_b, _ = dm.augment_training_batch(x, y.cuda(), generator=torch.Generator("cuda").manual_seed(1))
    assert out_a.device.type == "cuda" and out_a.shape == x.shape
    assert torch.equal(out_a, out_b)  # seeded: reproducible on the device
    changed = (out_a - x).flatten(1).abs().sum(1) > 0
    assert changed.float().mean() > 0.5
    assert not torch.equal(out_a[0] - x[0], out_a[1] - x[1])  # a different draw per sample


DDP_GPU = """
import torch, lightning.pytorch as pl
from reliability_registry import BY_NAME, fit
run = fit(BY_NAME["all_together"], 2, accelerator="gpu", devices=1, strategy="ddp", deterministic=False)
BY_NAME["all_together"].check(run.callbacks, run.trainer, run.model)
torch.save({"step": run.trainer.global_step, "world": run.trainer.world_size}, OUT / "ddp_gpu.pt")
"""


def test_one_gpu_ddp_smoke(tmp_path: Path) -> None:
    run_ddp_script(DDP_GPU, tmp_path)
    out = torch.load(tmp_path / "ddp_gpu.pt", weights_only=True)
    assert out["world"] == 1 and out["step"] == 16


class DeviceAndDropoutProbe(pl.Callback):
    """What every training step ran on: the devices of the batch and of the parameters, and the injected dropout's
    rate and the share of its non-zero inputs that it zeroed (hooked at fit start, after ScheduledDropout's setup
    injected it)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str, set[str]]] = []
        self.drops: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        injected = [m for m in pl_module.modules() if isinstance(m, InjectedDropout)]
        assert len(injected) == 1, injected

        def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if module.training:
                alive = args[0] != 0
                dropped = float((out[alive] == 0).float().mean())
                self.drops.append(
                    {"step": trainer.global_step, "p": module.p, "device": out.device.type, "dropped": dropped}
                )

        injected[0].register_forward_hook(hook)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batches.append(
            (trainer.global_step, batch[0].device.type, {p.device.type for p in pl_module.parameters()})
        )


def test_model_and_batches_move_to_cuda_and_the_injected_dropout_runs_there_at_the_scheduled_rate() -> None:
    from lightning_reg import Linear, ScheduledDropout

    sched = Linear(start=0.1, end=0.5, end_at=4)  # 0.1, 0.2, ... 0.5 at steps 0-4
    probe = DeviceAndDropoutProbe()
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ScheduledDropout(sched, inject=["ReLU"], verbose=False), probe],
    )
    pl.seed_everything(0, verbose=False)
    trainer.fit(TinyModule(), DataLoader(make_blobs(128), batch_size=32))
    assert probe.batches == [(step, "cuda", {"cuda"}) for step in range(5)]
    assert [(d["step"], d["device"]) for d in probe.drops] == [(step, "cuda") for step in range(5)]
    assert [d["p"] for d in probe.drops] == pytest.approx([sched(step) for step in range(5)])
    # ~500 non-zero ReLU outputs a step: the share dropped is the rate within 0.1 (over 4 standard deviations).
    for d in probe.drops:
        assert abs(d["dropped"] - d["p"]) < 0.1, probe.drops
