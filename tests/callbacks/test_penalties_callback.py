"""WeightPenalty, MaxNorm and PenaltyLossMixin on real Lightning Trainers (single process, CPU)."""

from __future__ import annotations

from functools import partial

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins import MixedPrecision
from torch import nn

from lightning_reg import MaxNorm, PenaltyLossMixin, WeightPenalty
from lightning_reg.core.schedules import Linear
from lightning_reg.data import DigitsDataModule
from lightning_reg.errors import ConfigError
from lightning_reg.models import MLPClassifier

from helpers import MemoryLogger, TinyModule, loaders
from helpers import fit as shared_fit

QUIET = dict(
    accelerator="cpu",
    devices=1,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)


class Tiny(TinyModule):
    """TinyModule with a choice of optimizer and an optional hand-written penalty in the loss."""

    def __init__(
        self, opt: str = "sgd", l1: float = 0.0, l2: float = 0.0, head_l2: float | None = None, lr: float = 0.1
    ) -> None:
        super().__init__(lr=lr)
        self.opt, self.l1, self.l2 = opt, l1, l2
        self.head_l2 = l2 if head_l2 is None else head_l2

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        w0, w1 = self.net[0].weight, self.net[-1].weight
        if self.l1:
            loss = loss + self.l1 * (w0.abs().sum() + w1.abs().sum())
        if self.l2 or self.head_l2:
            loss = loss + self.l2 * w0.pow(2).sum() + self.head_l2 * w1.pow(2).sum()
        return loss

    def configure_optimizers(self):
        if self.opt == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr * 0.1)
        if self.opt == "momentum":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def make(cls=Tiny, **kw):
    torch.manual_seed(0)
    return cls(**kw)


def _penalty_data():
    train, _ = loaders(n=512, batch_size=32)
    return train, None


# fit(model, *callbacks, max_epochs=1, limit_train_batches=8, ckpt_path=..., **trainer_kw) -> Trainer: training only.
fit = partial(shared_fit, data=_penalty_data, max_epochs=1, limit_train_batches=8, limit_val_batches=0)


def max_diff(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# ------------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize(
    "accumulate, precision",
    [(1, "32-true"), (4, "32-true"), (1, "bf16-mixed"), (4, "bf16-mixed"), (2, "16-mixed")],
)
def test_callback_equals_penalty_in_loss_under_sgd(accumulate, precision):
    kw = dict(limit_train_batches=16, accumulate_grad_batches=accumulate)
    if precision == "16-mixed":
        # Trainer(precision="16-mixed") falls back to bf16 on the CPU; the plugin itself runs fp16 autocast with a
        # GradScaler (loss x 65536). Equality shows the gradients are unscaled when the callback adds the penalty.
        kw["plugins"] = [MixedPrecision("16-mixed", "cpu")]
    else:
        kw["precision"] = precision
    callback = WeightPenalty(l1=1e-3, l2=1e-2)
    with_cb = make()
    trainer = fit(with_cb, callback, **kw)
    in_loss = make(l1=1e-3, l2=1e-2)
    fit(in_loss, **kw)
    assert max_diff(with_cb, in_loss) < 1e-6
    if precision == "16-mixed":
        assert trainer.precision_plugin.scaler.get_scale() > 1.0  # the loss really was scaled
    if accumulate == 1 and precision == "32-true":
        bare = make()
        fit(bare, **kw)
        assert max_diff(with_cb, bare) > 1e-3  # the penalty did something, so the comparison can fail
    # Once per optimizer step, not per micro-batch.
    assert callback.run_summary()["optimizer_steps"] == trainer.global_step == 16 // accumulate


@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_gradient_mode_is_coupled_like_a_loss_penalty_for_stateful_optimizers(opt):
    with_cb = make(opt=opt)
    fit(with_cb, WeightPenalty(l2=1e-2, groups={"net.2.*": {"l2": 5e-2}}))
    in_loss = make(opt=opt, l2=1e-2, head_l2=5e-2)
    fit(in_loss)
    assert max_diff(with_cb, in_loss) < 1e-5


class MixinTiny(PenaltyLossMixin, TinyModule):
    def __init__(self, **penalty) -> None:
        super().__init__()
        self.configure_penalty(**penalty)

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + self.penalty_loss(log=True)


def test_mixin_matches_callback_with_groups_and_schedule():
    penalty = dict(l1=1e-3, l2=1e-2, groups={"net.2.*": {"l2": 0.1}}, schedule=Linear(0.0, 1.0, begin=2, end_at=6))
    with_cb = make(TinyModule)
    fit(with_cb, WeightPenalty(**penalty), limit_train_batches=8, accumulate_grad_batches=2)
    mixin = make(MixinTiny, **penalty)
    fit(mixin, limit_train_batches=8, accumulate_grad_batches=2)
    assert max_diff(with_cb, mixin) < 1e-6


def test_mixin_penalty_equals_hand_written_value():
    m = make(MixinTiny, l1=0.01, l2=0.1, exclude=["net.2.*"])
    w = m.net[0].weight
    torch.testing.assert_close(m.penalty_loss(), 0.01 * w.abs().sum() + 0.1 * w.pow(2).sum())
    with pytest.raises(ConfigError, match="configure_penalty"):
        type("Bare", (PenaltyLossMixin, TinyModule), {})().penalty_loss()


def test_mixin_on_a_plain_module_computes_the_penalty_but_cannot_log_it():
    class PlainNet(PenaltyLossMixin, nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.configure_penalty(l2=0.5)

    net = PlainNet()
    torch.testing.assert_close(net.penalty_loss(), 0.5 * net.fc.weight.pow(2).sum())
    with pytest.raises(ConfigError, match=r"penalty_loss\(log=True\)`.*PlainNet is not a LightningModule"):
        net.penalty_loss(log=True)


# --------------------------------------------------------------------------- several optimizers, manual
class TwoOptimizers(pl.LightningModule):
    """Manual optimization, one backward, two optimizers (different LRs) stepping their own halves."""

    def __init__(self, l2_in_loss: float = 0.0, raw: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.a, self.b = nn.Linear(16, 8), nn.Linear(8, 4)
        self.l2_in_loss, self.raw = l2_in_loss, raw

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_a, opt_b = self.optimizers(use_pl_optimizer=not self.raw)
        loss = F.cross_entropy(self.b(torch.relu(self.a(x))), y)
        loss = loss + self.l2_in_loss * (self.a.weight.pow(2).sum() + self.b.weight.pow(2).sum())
        opt_a.zero_grad()
        opt_b.zero_grad()
        self.manual_backward(loss)
        opt_a.step()  # b's gradients are still there: a penalty leaking into them would show below
        opt_b.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.a.parameters(), lr=0.1), torch.optim.SGD(self.b.parameters(), lr=0.05)


def test_manual_optimization_with_two_optimizers_each_penalizes_its_own_params():
    with_cb = make(TwoOptimizers)
    callback = WeightPenalty(l2=0.05)
    fit(with_cb, callback)
    in_loss = make(TwoOptimizers, l2_in_loss=0.05)
    fit(in_loss)
    assert max_diff(with_cb, in_loss) < 1e-6
    assert callback.run_summary()["optimizer_steps"] == 16  # 8 batches x 2 optimizers


def test_manual_optimization_stepping_raw_optimizers_is_a_clear_error():
    with pytest.raises(ConfigError, match="without Lightning's on_before_optimizer_step"):
        fit(make(TwoOptimizers, raw=True), WeightPenalty(l2=0.05))


class AfterStepReference(Tiny):
    """Hand-written proximal / decoupled update after each optimizer step, with two param groups."""

    def __init__(self, mode: str = "", l1: float = 0.0, l2: float = 0.0, opt: str = "sgd") -> None:
        super().__init__(opt=opt)
        self.mode, self.ref_l1, self.ref_l2 = mode, l1, l2

    def configure_optimizers(self):
        groups = [{"params": self.net[0].parameters(), "lr": 0.2}, {"params": self.net[-1].parameters(), "lr": 0.05}]
        return torch.optim.Adam(groups) if self.opt == "adam" else torch.optim.SGD(groups)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not self.mode:
            return
        with torch.no_grad():
            for group, layer in zip(optimizer.param_groups, (self.net[0], self.net[-1])):
                w, lr = layer.weight, group["lr"]
                if self.mode == "proximal":
                    w.copy_(w.sign() * (w.abs() - lr * self.ref_l1).clamp_min(0.0))
                else:
                    w.sub_(lr * 2 * self.ref_l2 * w)


@pytest.mark.parametrize("mode, opt, coef", [("proximal", "sgd", {"l1": 0.05}), ("decoupled", "adam", {"l2": 0.5})])
def test_after_step_modes_match_hand_written_updates_with_per_group_lr(mode, opt, coef):
    with_cb = make(AfterStepReference, opt=opt)
    fit(with_cb, WeightPenalty(mode=mode, **coef))
    reference = make(AfterStepReference, mode=mode, opt=opt, **coef)
    fit(reference)
    bare = make(AfterStepReference, opt=opt)
    fit(bare)
    assert max_diff(with_cb, reference) < 1e-6
    assert max_diff(with_cb, bare) > 1e-3


# --------------------------------------------------------------------------------- refused set-ups
class LBFGSTiny(TinyModule):
    def configure_optimizers(self):
        return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)


class TwiceSGD(torch.optim.SGD):
    """A closure-based optimizer of our own: it evaluates the closure twice per step."""

    def step(self, closure=None):
        closure()
        return super().step(closure)


class TwiceTiny(TinyModule):
    def configure_optimizers(self):
        return TwiceSGD(self.parameters(), lr=0.1)


def test_any_optimizer_evaluating_its_closure_twice_is_stopped():
    with pytest.raises(ConfigError, match="TwiceSGD evaluated its closure more than once.*PenaltyLossMixin"):
        fit(make(TwiceTiny), WeightPenalty(l2=1e-2))


class LBFGSMixin(PenaltyLossMixin, LBFGSTiny):
    def __init__(self) -> None:
        super().__init__()
        self.configure_penalty(l2=1e-2)

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + self.penalty_loss()


def test_lbfgs_is_refused_before_training_and_the_mixin_works_instead():
    model = make(LBFGSTiny)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ConfigError, match="LBFGS.*PenaltyLossMixin"):
        fit(model, WeightPenalty(l2=1e-2))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    mixin = make(LBFGSMixin)
    trainer = fit(mixin, limit_train_batches=2)
    assert trainer.global_step == 2 and max_diff(mixin, make(LBFGSMixin)) > 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l2": -1e-4}, "`l2` must be in \\[0.0, inf\\]; got -0.0001"),
        ({"l1": 1e-4, "mode": "sparse"}, "`mode` must be one of 'gradient', 'proximal', 'decoupled'; got 'sparse'"),
        ({"l2": 1e-4, "mode": "proximal"}, "mode='proximal'.*needs `l1` > 0"),
        ({"l2": 1e-4, "log_every_n_steps": -1}, "log_every_n_steps"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        WeightPenalty(**kwargs)


@pytest.mark.parametrize("callback", [WeightPenalty(l2=1e-3, include=["Conv2d"]), MaxNorm(3.0, exclude=["Linear"])])
def test_empty_selection_fails_before_training_and_lists_the_model(callback):
    model = make(TinyModule)
    with pytest.raises(ConfigError, match=r"matches no parameter of TinyModule.*net.0.weight \(Linear, \(32, 16\)\)"):
        fit(model, callback)
    assert max_diff(model, make(TinyModule)) == 0.0
    with pytest.raises(ConfigError, match="max_norm"):
        MaxNorm(0.0)


# ---------------------------------------------------------------------------------------- proximal L1
def test_proximal_l1_gives_exact_zeros_on_digits_and_logged_sparsity_matches_the_count():
    def run(mode, epochs):
        torch.manual_seed(0)
        model = MLPClassifier(
            input_shape=(1, 8, 8), num_classes=10, hidden_sizes=[64], optimizer=partial(torch.optim.SGD, lr=0.3)
        )
        logger = MemoryLogger()
        callback = WeightPenalty(l1=3e-3, mode=mode, log_every_n_steps=1)
        trainer = pl.Trainer(max_epochs=epochs, logger=logger, callbacks=[callback], **QUIET)
        trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, seed=0))
        return model, logger, callback, trainer

    model, logger, callback, trainer = run("proximal", epochs=3)
    weights = [model.net[1].weight, model.net[3].weight]
    zeros = sum(int((w == 0).sum()) for w in weights)
    numel = sum(w.numel() for w in weights)
    assert zeros / numel > 0.15
    last_step, last_frac = logger.series("reg/l1_zero_frac")[-1]
    assert last_step == trainer.global_step
    assert last_frac == zeros / numel
    assert callback.run_summary()["final_l1_zero_frac"] == zeros / numel
    assert len(logger.series("reg/l1")) == trainer.global_step  # every step, one value each
    assert trainer.callback_metrics["val/acc"] > 0.75  # unpenalized: 0.825 with this seed and budget
    # Plain subgradient L1 never lands on exact zeros.
    sub, _, _, _ = run("gradient", epochs=1)
    assert sum(int((w == 0).sum()) for w in (sub.net[1].weight, sub.net[3].weight)) == 0


def test_logging_follows_its_own_period_and_values_are_the_penalty():
    logger, model = MemoryLogger(), make(TinyModule)
    fit(
        model,
        WeightPenalty(l1=1e-3, l2=1e-2, log_every_n_steps=3),
        limit_train_batches=8,
        logger=logger,
        log_every_n_steps=1,
    )
    assert [s for s, _ in logger.series("reg/l2")] == [3, 6]  # its own period, no stale repeats in between
    logger, model = MemoryLogger(), make(TinyModule)
    fit(model, WeightPenalty(l2=1e-2, log_every_n_steps=4), limit_train_batches=8, logger=logger)
    w0, w1 = model.net[0].weight, model.net[-1].weight
    # At the last logged step (8 = the end), the value is l2·Σw² of the final weights.
    assert logger.series("reg/l2")[-1] == (
        8,
        pytest.approx(1e-2 * float((w0.pow(2).sum() + w1.pow(2).sum()).detach()), rel=1e-6),
    )
    logger = MemoryLogger()
    fit(
        make(TinyModule),
        WeightPenalty(l2=1e-2, log_every_n_steps=0),
        limit_train_batches=4,
        logger=logger,
        log_every_n_steps=1,
    )
    assert logger.series("reg/l2") == []


# ---------------------------------------------------------------------------------------------- MaxNorm
class NormCheck(pl.Callback):
    """Records the largest unit norm of the Linear kernels after every optimizer step."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            return  # an accumulation micro-batch: no step happened
        self.step = trainer.global_step
        self.norms.append(max(float(w.norm(dim=1).max()) for w in (pl_module.net[0].weight, pl_module.net[-1].weight)))


@pytest.mark.parametrize("precision, accumulate", [("32-true", 1), ("bf16-mixed", 2)])
def test_max_norm_holds_after_every_step(precision, accumulate):
    check = NormCheck()
    model = make(Tiny, lr=1.0)
    fit(model, MaxNorm(max_norm=0.5), check, precision=precision, accumulate_grad_batches=accumulate)
    assert len(check.norms) == 8 // accumulate and max(check.norms) <= 0.5 + 1e-6
    free = NormCheck()
    fit(make(Tiny, lr=1.0), free, precision=precision, accumulate_grad_batches=accumulate)
    assert max(free.norms) > 0.6  # without the constraint the norms do leave the ball


# ----------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("accumulate", [1, 2])
def test_resume_is_bit_identical_with_scheduled_coefficient(tmp_path, accumulate):
    def callbacks():
        return [
            WeightPenalty(l2=1e-2, schedule=Linear(0.0, 1.0, begin=2, end_at=12)),
            WeightPenalty(l1=1e-3, mode="proximal"),
            MaxNorm(max_norm=0.6),
        ]

    kw = dict(limit_train_batches=8, accumulate_grad_batches=accumulate)
    full = make(opt="momentum")
    full_cbs = callbacks()
    fit(full, *full_cbs, max_epochs=2, **kw)

    first = make(opt="momentum")
    trainer = fit(first, *callbacks(), max_epochs=1, **kw)
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = torch.load(ckpt, weights_only=True)
    assert len([k for k in loaded["callbacks"] if "WeightPenalty" in k or "MaxNorm" in k]) == 3
    mid_scale = loaded["callbacks"][full_cbs[0].state_key]["scale"]
    assert 0.0 < mid_scale < 1.0  # the checkpoint lands inside the warm-up

    resumed = make(opt="momentum")
    resumed_cbs = callbacks()
    fit(resumed, *resumed_cbs, max_epochs=2, ckpt_path=str(ckpt), **kw)
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for a, b in zip(full_cbs, resumed_cbs):
        assert a.state_dict() == b.state_dict()
    assert resumed_cbs[0].run_summary()["optimizer_steps"] == 16 // accumulate


def test_load_state_dict_tolerates_missing_keys():
    cb = WeightPenalty(l2=1e-3)
    cb.load_state_dict({})
    assert cb.state_dict()["steps"] == 0
    mn = MaxNorm(2.0)
    mn.load_state_dict({"steps": 4})
    assert mn.run_summary()["optimizer_steps"] == 4
