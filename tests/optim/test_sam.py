"""SAM/ASAM through Lightning's closure: equal to a hand-written two-pass step, and its refusals."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_reg import WeightPenalty
from lightning_reg.errors import ConfigError
from lightning_reg.optim.sam import SAM, sam_perturbation

from helpers import TinyModule, make_blobs
from reliability_registry import assert_same, fit

LR, RHO, STEPS = 0.1, 0.05, 4


class SAMModule(TinyModule):
    def __init__(self, adaptive: bool = False, rho: float = RHO, **kw) -> None:
        super().__init__(**kw)
        self.adaptive, self.rho = adaptive, rho

    def configure_optimizers(self):
        return SAM(self.parameters(), torch.optim.SGD, rho=self.rho, adaptive=self.adaptive, lr=LR)


def _reference(model: nn.Module, batches, adaptive: bool, rho: float, l2: float = 0.0) -> nn.Module:
    """SAM written out by hand: grad at w, w + rho·T²g/‖Tg‖, grad there (+ penalty), restore, SGD step."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    kernels = [model.net[0].weight, model.net[-1].weight]

    def grads(x, y):
        for p in params:
            p.grad = None
        loss = nn.functional.cross_entropy(model(x), y)
        if l2:
            loss = loss + l2 * sum(k.pow(2).sum() for k in kernels)
        loss.backward()
        return [p.grad.clone() for p in params]

    for x, y in batches:
        g = grads(x, y)
        with torch.no_grad():
            t = [p.abs() if adaptive else torch.ones_like(p) for p in params]
            norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
            saved = [p.clone() for p in params]
            for p, ti, gi in zip(params, t, g):
                p.add_(rho * ti * ti * gi / (norm + 1e-12))
        g2 = grads(x, y)
        with torch.no_grad():
            for p, s, gi in zip(params, saved, g2):
                p.copy_(s - LR * gi)
    return model


def _batches(n: int = STEPS * 16):
    x, y = make_blobs(n, seed=3).tensors
    return DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=False)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_sam_in_a_trainer_equals_the_hand_written_two_pass_step(adaptive: bool) -> None:
    rho = 0.5 if adaptive else RHO
    pl.seed_everything(0)
    model = SAMModule(adaptive=adaptive, rho=rho)
    expected = _reference(model, list(_batches()), adaptive, rho)
    sgd = _reference(model, list(_batches()), adaptive, 0.0)  # rho = 0: plain SGD
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, _batches())
    assert trainer.global_step == STEPS
    for (name, p), q in zip(model.named_parameters(), expected.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-6, rtol=0, msg=name)
    # SAM's steps are measurably not SGD's, so the comparison above can fail
    assert (expected.net[0].weight - sgd.net[0].weight).abs().max() > 1e-4


def test_sam_with_weight_penalty_is_sam_of_the_penalized_loss() -> None:
    pl.seed_everything(0)
    model = SAMModule()
    expected = _reference(model, list(_batches()), False, RHO, l2=1e-2)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WeightPenalty(l2=1e-2, log_every_n_steps=0)],
    )
    trainer.fit(model, _batches())
    for (name, p), q in zip(model.named_parameters(), expected.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), atol=1e-6, rtol=0, msg=name)


def test_sam_refuses_gradient_accumulation_before_stepping() -> None:
    model = SAMModule()
    before = copy.deepcopy(model.state_dict())
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ConfigError, match="accumulate_grad_batches=2"):
        trainer.fit(model, _batches())
    assert_same(before, model.state_dict(), "weights")


def test_sam_refuses_a_step_without_closure() -> None:
    # What precision='16-mixed' does (GradScaler.step(optimizer) passes no closure); 16-mixed needs a GPU here.
    net = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="16-mixed"):
        SAM(net.parameters(), torch.optim.SGD, lr=0.1).step()


def test_sam_bf16_mixed_trains_and_keeps_fp32_weights() -> None:
    pl.seed_everything(0)
    model = SAMModule()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=STEPS,
        precision="bf16-mixed",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = model.net[0].weight.detach().clone()
    trainer.fit(model, _batches())
    assert model.net[0].weight.dtype == torch.float32
    assert torch.isfinite(model.net[0].weight).all() and not torch.equal(start, model.net[0].weight)


def test_sam_resume_is_bit_identical(tmp_path) -> None:
    class Momentum(SAMModule):
        def configure_optimizers(self):
            return SAM(self.parameters(), torch.optim.SGD, rho=RHO, lr=LR, momentum=0.9)

    def model() -> Momentum:
        pl.seed_everything(0)
        return Momentum()

    full = fit(None, 3, model=model())
    fit(None, 1, model=model(), ckpt_dir=tmp_path)
    resumed = fit(None, 3, model=model(), ckpt_path=tmp_path / "last.ckpt")
    assert not torch.equal(model().net[0].weight, full.model.net[0].weight)
    assert_same(full.weights(), resumed.weights(), "weights")
    assert resumed.trainer.optimizers[0].base.state  # momentum buffers came back through the shared state


@pytest.mark.parametrize("bad", [{"rho": 0.0}, {"rho": -1.0}, {"adaptive": "yes"}, {"base": 3}])
def test_sam_bad_arguments_are_config_errors(bad) -> None:
    kw = {"base": torch.optim.SGD, "lr": 0.1, **bad}
    with pytest.raises(ConfigError, match=next(iter(bad))):
        SAM(nn.Linear(2, 2).parameters(), **kw)


def test_sam_perturbation_has_norm_rho() -> None:
    g = [torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), torch.randn(4)]
    e = sam_perturbation([torch.ones(3, 4), torch.ones(4)], g, rho=0.3)
    assert abs(float(torch.sqrt(sum((x**2).sum() for x in e))) - 0.3) < 1e-6
