"""ScheduledDropout in real Trainer runs: the rate every targeted module sees at every training batch."""

from __future__ import annotations

import logging
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_reg import Early, FromCallable, Late, Linear, ScheduledDropout
from lightning_reg.core.dropout import InjectedDropout, find_dropout_modules
from lightning_reg.core.injection import inject_dropout
from lightning_reg.errors import ConfigError

from helpers import MemoryLogger, TinyModule, loaders
from helpers import fit as shared_fit
from scheduled_dropout_helpers import (
    DropPath,
    LateBuiltModule,
    ManualModule,
    RateProbe,
    ReseedEachBatch,
    ResidualModule,
    trainer_kwargs,
)


def fit(model, *callbacks, **trainer_overrides):
    """helpers.fit, seeded, with a RateProbe after ``callbacks``; returns the Trainer and the probe."""
    pl.seed_everything(0, verbose=False)
    probe = RateProbe()
    trainer = shared_fit(model, *callbacks, probe, **trainer_kwargs(**trainer_overrides))
    return trainer, probe


# -- rates per batch ---------------------------------------------------------------------------------


def test_step_interval_sets_schedule_of_global_step_before_every_batch():
    sched = Linear(start=0.0, end=0.5, begin=2, end_at=12)
    trainer, probe = fit(TinyModule(dropout=0.3), ScheduledDropout(sched))
    records = probe.by_module()["net.2"]
    assert len(records) == 16  # 8 batches x 2 epochs, one training forward each
    assert [r["step"] for r in records] == list(range(16))
    assert [r["p"] for r in records] == [sched(t) for t in range(16)]
    assert records[0]["p"] == 0.0 and records[7]["p"] == pytest.approx(0.25) and records[-1]["p"] == 0.5
    assert trainer.callback_metrics["reg/dropout_p"].item() == pytest.approx(0.5)


def test_epoch_interval_sets_rate_once_per_epoch():
    sched = Early(p=0.3, cutoff=2, unit="epoch")
    cb = ScheduledDropout(sched, interval="epoch")
    _, probe = fit(TinyModule(dropout=0.1), cb, max_epochs=3)
    rates = [(r["epoch"], r["p"]) for r in probe.by_module()["net.2"]]
    assert rates == [(0, 0.3)] * 8 + [(1, 0.3)] * 8 + [(2, 0.0)] * 8


def test_step_schedule_with_epoch_interval_uses_step_at_epoch_start():
    sched = Linear(start=0.0, end=0.8, end_at=16)
    _, probe = fit(TinyModule(dropout=0.1), ScheduledDropout(sched, interval="epoch"))
    assert [r["p"] for r in probe.records] == [0.0] * 8 + [0.4] * 8


def test_gradient_accumulation_step_means_optimizer_step():
    # 8 batches per epoch, accumulate 2 -> 4 optimizer steps per epoch; rate = 0.1 * optimizer step.
    sched = Linear(start=0.0, end=0.7, end_at=7)
    _, probe = fit(TinyModule(dropout=0.1), ScheduledDropout(sched), accumulate_grad_batches=2)
    expected = [0.0, 0.0, 0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.6, 0.6, 0.7, 0.7]
    assert [r["p"] for r in probe.records] == pytest.approx(expected, abs=1e-12)
    assert [r["step"] for r in probe.records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]


class RateSeen(pl.Callback):
    """What ``trainer.callback_metrics`` holds for the rate at the end of every training batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append((trainer.global_step, trainer.callback_metrics["reg/dropout_p"].item()))


@pytest.mark.parametrize(
    ("every", "trainer_every", "accumulate", "logged_steps"),
    [
        (3, 50, 1, [0, 3, 6, 9, 12, 15]),  # our own cadence, from step 0
        (None, 5, 1, [0, 5, 10, 15]),  # the trainer's log_every_n_steps
        (None, 2, 2, [0, 2, 4, 6]),  # optimizer steps: once per step, not per micro-batch
        (0, 1, 1, []),  # 0: nothing to the loggers, as in WeightPenalty and MaxNorm
    ],
)
def test_rate_reaches_loggers_at_the_cadence_and_callback_metrics_every_batch(
    every, trainer_every, accumulate, logged_steps
):
    sched = Linear(start=0.0, end=0.5, end_at=15)
    logger, seen = MemoryLogger(), RateSeen()
    trainer, probe = fit(
        TinyModule(dropout=0.1),
        ScheduledDropout(sched, log_every_n_steps=every),
        seen,
        logger=logger,
        log_every_n_steps=trainer_every,
        accumulate_grad_batches=accumulate,
    )
    series = logger.series("reg/dropout_p")
    assert [s for s, _ in series] == logged_steps
    assert [v for _, v in series] == pytest.approx([sched(s) for s in logged_steps], abs=1e-7)
    # callback_metrics is current at every batch: the rate the batch just trained with.
    assert len(seen.seen) == 16
    assert [v for _, v in seen.seen] == pytest.approx([r["p"] for r in probe.by_module()["net.2"]], abs=1e-7)


def test_resume_mid_accumulation_window_does_not_log_the_step_twice(tmp_path):
    """A checkpoint written inside an accumulation window: the step whose rate was already logged stays logged once."""
    sched = Linear(start=0.0, end=0.5, end_at=15)

    class SaveAtBatch(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == 0 and batch_idx == 2:  # the first micro-batch of optimizer step 1
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    def run(*callbacks, ckpt=None):
        logger = MemoryLogger()
        trainer = pl.Trainer(
            callbacks=[ScheduledDropout(sched, log_every_n_steps=1), *callbacks],
            **trainer_kwargs(logger=logger, accumulate_grad_batches=2, log_every_n_steps=1),
        )
        train, val = loaders()
        trainer.fit(TinyModule(dropout=0.1), train, val, ckpt_path=ckpt)
        return logger.series("reg/dropout_p")

    full = run(SaveAtBatch())
    assert [s for s, _ in full] == list(range(8))
    resumed = run(ckpt=str(tmp_path / "mid.ckpt"))
    assert resumed == [(s, v) for s, v in full if s > 1]


def test_log_every_n_steps_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"`log_every_n_steps` must be an integer in \[0, inf\]; got -1"):
        ScheduledDropout(0.1, log_every_n_steps=-1)


def test_timm_style_drop_prob_module_with_depth_scaling():
    sched = Linear(start=0.0, end=0.4, end_at=15)
    cb = ScheduledDropout(sched, depth_scale=True)
    _, probe = fit(ResidualModule(blocks=4), cb)
    by = probe.by_module()
    names = [f"net.{i}.drop_path" for i in range(1, 5)]
    assert sorted(by) == names and cb.target_names == names
    for layer, name in enumerate(names):
        assert [r["p"] for r in by[name]] == pytest.approx([sched(t) * (layer + 1) / 4 for t in range(16)], abs=1e-12)
    assert by["net.4.drop_path"][-1]["p"] == pytest.approx(0.4)
    assert by["net.1.drop_path"][-1]["p"] == pytest.approx(0.1)


def test_types_and_name_globs_narrow_the_targets():
    class Mixed(TinyModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(16, 32), nn.Dropout(0.1), nn.ReLU(), DropPath(0.0), nn.AlphaDropout(0.1), nn.Linear(32, 4)
            )

    assert [t.name for t in find_dropout_modules(Mixed())] == ["net.1", "net.3", "net.4"]
    assert [t.name for t in find_dropout_modules(Mixed(), modules=["DropPath"])] == ["net.3"]
    assert [t.name for t in find_dropout_modules(Mixed(), modules=["drop_prob", nn.AlphaDropout])] == ["net.3", "net.4"]
    assert [t.name for t in find_dropout_modules(Mixed(), names=["net.[13]"])] == ["net.1", "net.3"]
    assert [t.name for t in find_dropout_modules(Mixed(), exclude=["net.1"])] == ["net.3", "net.4"]

    cb = ScheduledDropout(0.25, modules=["DropPath"])
    _, probe = fit(Mixed(), cb, max_epochs=1)
    by = probe.by_module()
    assert {r["p"] for r in by["net.3"]} == {0.25}
    assert {r["p"] for r in by["net.1"]} == {0.1} and {r["p"] for r in by["net.4"]} == {0.1}  # untouched


# -- injection -----------------------------------------------------------------------------------------


def test_injection_after_relu_changes_train_forward_but_not_eval():
    torch.manual_seed(0)
    model = TinyModule()  # Linear-ReLU-Linear: no dropout at all
    x = torch.randn(64, 16)
    keys = list(model.state_dict())
    model.eval()
    before = model(x)
    added = inject_dropout(model, ["ReLU"], p=0.5)
    assert added == ["net.1.injected_dropout"]
    assert list(model.state_dict()) == keys  # no new parameters or buffers, same names
    assert torch.equal(model(x), before)  # eval: identity
    model.train()
    hidden = model.net[1](model.net[0](x))
    assert (hidden == 0).float().mean() > 0.6  # ReLU zeros (~0.5) plus dropout on the rest
    assert not torch.allclose(model(x), before)


class AdamTiny(TinyModule):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_injection_leaves_optimizer_and_weights_as_without_it_when_rate_is_zero():
    # Dropout has no parameters: a run with injected p=0 dropout ends bit-identical, Adam state included.
    plain = AdamTiny()
    injected = AdamTiny()
    injected.load_state_dict(plain.state_dict())
    t1, _ = fit(plain, max_epochs=1)
    cb = ScheduledDropout(0.0, inject=["ReLU"])
    t2, probe = fit(injected, cb, max_epochs=1)
    assert cb.injected == ["net.1.injected_dropout"] and len(probe.records) == 8
    for a, b in zip(plain.parameters(), injected.parameters()):
        assert torch.equal(a, b)
    s1, s2 = t1.optimizers[0].state_dict(), t2.optimizers[0].state_dict()
    assert s1["param_groups"] == s2["param_groups"]  # same parameters, same hyperparameters
    assert {id(p) for g in t2.optimizers[0].param_groups for p in g["params"]} == {id(p) for p in injected.parameters()}
    assert s1["state"].keys() == s2["state"].keys() and len(s1["state"]) == 4
    for k in s1["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])


def test_injected_rate_follows_schedule_and_is_logged(caplog):
    sched = Late(p=0.4, cutoff=8)
    cb = ScheduledDropout(sched, inject=["ReLU"])
    # Lightning's package loggers stop propagating to the root logger when lightning is imported before any
    # root handler exists (as in a full test session), so listen on them directly.
    package_loggers = [logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")]
    for lg in package_loggers:
        lg.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            _, probe = fit(TinyModule(), cb)
    finally:
        for lg in package_loggers:
            lg.removeHandler(caplog.handler)
    assert "injected nn.Dropout after 1 module(s) of type [ReLU]" in caplog.text and "net.1" in caplog.text
    assert [r["p"] for r in probe.by_module()["net.1.injected_dropout"]] == [0.0] * 8 + [0.4] * 8
    summary = cb.run_summary()
    assert summary["injected"] == ["net.1.injected_dropout"] and summary["final_rate"] == 0.4
    assert summary["module_rates"] == {"net.1.injected_dropout": 0.4} and summary["final_step"] == 15


def test_inject_after_every_linear_except_the_last():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert inject_dropout(net, ["nn.Linear"], skip_last=True) == ["0.injected_dropout", "2.injected_dropout"]
    assert not hasattr(net[4], "injected_dropout")
    assert inject_dropout(net, [nn.Linear], skip_last=True) == []  # idempotent (setup runs for fit and test)
    assert sum(isinstance(m, InjectedDropout) for m in net.modules()) == 2


def test_inject_if_absent_schedules_the_models_own_dropout_instead():
    own = ScheduledDropout(0.2, inject=["ReLU"], inject_if_absent=True)
    _, probe = fit(TinyModule(dropout=0.5), own, max_epochs=1)
    assert own.injected == [] and own.target_names == ["net.2"]
    assert {r["p"] for r in probe.records} == {0.2}
    none = ScheduledDropout(0.2, inject=["ReLU"], inject_if_absent=True)
    fit(TinyModule(), none, max_epochs=1)
    assert none.injected == ["net.1.injected_dropout"]


def test_model_built_in_configure_model_is_discovered():
    cb = ScheduledDropout(0.3, inject=["ReLU"])
    _, probe = fit(LateBuiltModule(), cb, max_epochs=1)
    assert cb.injected == ["net.1.injected_dropout"] and {r["p"] for r in probe.records} == {0.3}


# -- precision, manual optimization --------------------------------------------------------------------


def test_bf16_mixed_on_cpu():
    sched = Linear(start=0.0, end=0.3, end_at=15)
    trainer, probe = fit(TinyModule(), ScheduledDropout(sched, inject=["ReLU"]), precision="bf16-mixed")
    assert [r["p"] for r in probe.records] == [sched(t) for t in range(16)]
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_manual_optimization_steps_by_optimizer_step():
    # ManualModule steps its optimizer every other batch, so global_step advances every other batch.
    sched = Linear(start=0.0, end=0.7, end_at=7)
    _, probe = fit(ManualModule(dropout=0.1), ScheduledDropout(sched))
    assert [r["step"] for r in probe.records] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert [r["p"] for r in probe.records] == pytest.approx([sched(r["step"]) for r in probe.records])


# -- resume --------------------------------------------------------------------------------------------


def test_resume_continues_the_sequence_and_ends_bit_identical(tmp_path):
    sched = Linear(start=0.0, end=0.45, end_at=15)

    def run(model, max_epochs, ckpt=None):
        pl.seed_everything(0, verbose=False)
        probe = RateProbe()
        cb = ScheduledDropout(sched, inject=["ReLU"])
        trainer = pl.Trainer(
            callbacks=[cb, ReseedEachBatch(), probe], **trainer_kwargs(max_epochs=max_epochs, accumulate_grad_batches=2)
        )
        train, val = loaders()
        trainer.fit(model, train, val, ckpt_path=ckpt)
        return trainer, probe, cb

    pl.seed_everything(0)
    init = TinyModule().state_dict()
    full = TinyModule()
    full.load_state_dict(init)
    _, probe_full, _ = run(full, 4)

    first = TinyModule()
    first.load_state_dict(init)
    with pytest.warns(UserWarning, match=r"`end_at`=15 \(steps\) lies beyond the end of training: this run has 8"):
        t1, probe_a, cb_a = run(first, 2)  # the interrupted run alone is too short for the ramp: it says so
    ckpt = tmp_path / "mid.ckpt"
    t1.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["callbacks"][cb_a.state_key]
    assert state == {
        "rate": pytest.approx(sched(7)),
        "step": 7,
        "epoch": 1,
        "modules": ["net.1.injected_dropout"],
        "injected": ["net.1.injected_dropout"],
        "last_logged_step": -1,
    }  # logger=False: nothing logged

    resumed = TinyModule()  # fresh model: injection happens again at setup, before the checkpoint loads
    _, probe_b, _ = run(resumed, 4, ckpt=str(ckpt))
    assert probe_a.records + probe_b.records == probe_full.records
    assert [r["p"] for r in probe_b.records][:2] == pytest.approx([sched(8), sched(8)])
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_state_key_differs_per_configuration_and_state_is_plain(tmp_path):
    a = ScheduledDropout(Early(p=0.1, cutoff=3))
    b = ScheduledDropout(Late(p=0.1, cutoff=3))
    c = ScheduledDropout(Early(p=0.1, cutoff=3), modules=["DropPath"])
    assert len({a.state_key, b.state_key, c.state_key}) == 3
    assert ScheduledDropout(Early(p=0.1, cutoff=3)).state_key == a.state_key
    a.load_state_dict({})  # older/missing keys are fine
    torch.save(a.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True) == a.state_dict()


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        (1.0, r"`schedule` must give drop rates in \[0, 1\); Constant\(unit='step', value=1.0\) gives 1.0 at step 0"),
        (-0.1, r"drop rates in \[0, 1\); .* gives -0.1 at step 0"),
        (Late(p=1.5, cutoff=3, unit="epoch"), r"drop rates in \[0, 1\); Late\(.*p=1.5.*\) gives 1.5 at epoch 3\."),
        ({"name": "erly", "p": 0.1}, r"`schedule.name` must be one of 'constant', .*'early'.*; got 'erly'"),
        ("early", r"`schedule` must be a number, a Schedule, a mapping or a callable; got 'early'"),
    ],
)
def test_bad_schedules_are_rejected_at_construction(schedule, match):
    with pytest.raises(ConfigError, match=match):
        ScheduledDropout(schedule)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": "batch"}, r"`interval` must be one of 'step', 'epoch'; got 'batch'"),
        ({"depth_scale": "yes"}, r"`depth_scale` must be True or False; got 'yes'"),
        ({"inject_skip_last": True}, r"only apply with `inject`.*got inject=None"),
        ({"log_name": ""}, r"`log_name` must be a non-empty string or None; got ''"),
        ({"inject": [3]}, r"`inject` entries must be module types or class names \(e.g. 'ReLU', 'DropPath'\); got 3"),
        ({"modules": [int]}, r"`modules` entries must be module types or class names .*got <class 'int'>"),
    ],
)
def test_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ScheduledDropout(0.1, **kwargs)


def test_callable_leaving_range_mid_run_stops_with_step_and_value():
    # A user function reading outside state passes the up-front checks and goes out of range mid-run.
    limit = {"p": 0.1}

    class Flip(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                limit["p"] = 1.0

    cb = ScheduledDropout(FromCallable(lambda t: limit["p"]))
    with pytest.raises(
        ConfigError,
        match=r"`schedule` must give drop rates in \[0, 1\); FromCallable\(fn=.*<lambda>, "
        r"unit='step'\) gave 1.0 at step 3, epoch 0",
    ):
        fit(TinyModule(dropout=0.1), cb, Flip(), max_epochs=1)


def test_no_target_module_without_inject_is_an_error_that_suggests_inject():
    class Never(TinyModule):
        def training_step(self, batch, batch_idx):
            raise AssertionError("training must not start")

    with pytest.raises(ConfigError) as err:
        fit(Never(), ScheduledDropout(0.1))
    msg = str(err.value)
    assert "found no module to schedule in Never" in msg and "Linear, ReLU, Sequential" in msg
    assert "inject=['ReLU']" in msg


def test_narrowing_to_nothing_is_an_error_naming_the_globs():
    with pytest.raises(ConfigError, match=r"names matching \['encoder\.\*'\].*Pass `inject`"):
        fit(TinyModule(dropout=0.1), ScheduledDropout(0.1, names=["encoder.*"]), max_epochs=1)


def test_inject_type_not_in_model_lists_the_models_types():
    with pytest.raises(
        ConfigError,
        match=r"`inject` names 'GELU', but the model has no module of that type\. "
        r"Module types in the model: Linear, ReLU, Sequential",
    ):
        fit(TinyModule(), ScheduledDropout(0.1, inject=["GELU"]), max_epochs=1)
    with pytest.raises(ConfigError, match=r"cannot add dropout after the container 'Sequential'"):
        fit(TinyModule(), ScheduledDropout(0.1, inject=["Sequential"]), max_epochs=1)


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        (
            Early(p=0.1, cutoff=5, unit="epoch"),
            r"`cutoff`=5 \(epochs\) lies beyond the end of training: this run has "
            r"2 epochs \(max_epochs=2; indices 0..1\)",
        ),
        (Late(p=0.1, cutoff=40), r"`cutoff`=40 \(steps\) lies beyond .* 16 steps \(trainer.estimated_stepping_batches"),
        (Linear(0.0, 0.2, end_at=30), r"`end_at`=30 \(steps\) lies beyond"),
    ],
)
def test_cutoff_beyond_training_length_warns_at_fit_start(schedule, match):
    with pytest.warns(UserWarning, match=match):
        fit(TinyModule(dropout=0.1), ScheduledDropout(schedule))


def test_cutoffs_within_training_do_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(TinyModule(dropout=0.1), ScheduledDropout(Early(p=0.1, cutoff=1, unit="epoch")))
        fit(TinyModule(dropout=0.1), ScheduledDropout(Linear(0.0, 0.2, end_at=16)))
    assert not [w for w in caught if "ScheduledDropout" in str(w.message)]


def test_eval_is_never_touched():
    cb = ScheduledDropout(0.9)
    trainer, probe = fit(TinyModule(dropout=0.1), cb, max_epochs=1)
    assert probe.eval_forwards == 2  # the two validation batches ran the dropout module in eval mode
    model = trainer.lightning_module.eval()
    x = torch.randn(8, 16)
    assert torch.equal(model(x), model(x))


def test_one_callback_reused_for_a_second_model_rediscovers():
    cb = ScheduledDropout(0.3, inject=["ReLU"], inject_if_absent=True)
    fit(TinyModule(dropout=0.1), cb, max_epochs=1)
    assert cb.target_names == ["net.2"] and cb.injected == []
    second = TinyModule()
    _, probe = fit(second, cb, max_epochs=1)
    assert cb.target_names == ["net.1.injected_dropout"] and {r["p"] for r in probe.records} == {0.3}


def test_epoch_dict_schedule_like_gradient_accumulation_scheduler():
    cb = ScheduledDropout({0: 0.3, 1: 0.1})
    assert cb.interval == "epoch"
    _, probe = fit(TinyModule(dropout=0.5), cb)
    assert [r["p"] for r in probe.records] == [0.3] * 8 + [0.1] * 8
