"""The reliability matrix: every callback of tests/reliability_registry.py against the same properties.

Resume (fresh process, bit-identical), DDP (2 CPU processes), bf16-mixed, gradient accumulation, several
optimizers, checkpoint compatibility both ways, weights_only loading, a killed run, a NaN loss.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_reg import EarlyStopping
from lightning_reg.callbacks import AtomicModelCheckpoint

from helpers import REPO, run_ddp_script
from reliability_registry import (
    BY_NAME,
    REGISTRY,
    STEPS_PER_EPOCH,
    NaNAfter,
    TwoOptimizerModule,
    assert_same,
    fit,
    sharded_train_loader,
)

N_EPOCHS, K_EPOCHS = 5, 2
NAMES = [e.name for e in REGISTRY]


def _script_env() -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("LOCAL_RANK", None)
    return env


def _run_script(body: str, tmp: Path, name: str, timeout: float = 300) -> None:
    script = tmp / f"{name}.py"
    script.write_text(
        "import sys, pathlib, logging, torch\n"
        "torch.set_num_threads(1)\n"
        "logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)\n"
        f"OUT = pathlib.Path({str(tmp)!r})\n" + textwrap.dedent(body)
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp, env=_script_env(), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")


# Process 1: the uninterrupted run to N epochs, and the run to K epochs that writes last.ckpt (the shipped
# last_checkpoint config: AtomicModelCheckpoint at the end of every validation). Process 2: resume to N.
FIRST = f"""
from reliability_registry import REGISTRY, fit
out = {{}}
for entry in REGISTRY:
    full = fit(entry, {N_EPOCHS})
    entry.check(full.callbacks, full.trainer, full.model)
    part = fit(entry, {K_EPOCHS}, ckpt_dir=OUT / entry.name)
    out[entry.name] = {{"weights": full.weights(), "states": full.states(), "logs": full.logger.records,
                       "k_step": part.trainer.global_step, "epochs": full.trainer.current_epoch}}
bare = fit(None, {K_EPOCHS}, ckpt_dir=OUT / "bare")
torch.save(out, OUT / "first.pt")
"""

RESUME = f"""
from reliability_registry import REGISTRY, fit
out = {{}}
for entry in REGISTRY:
    res = fit(entry, {N_EPOCHS}, ckpt_path=OUT / entry.name / "last.ckpt")
    entry.check(res.callbacks, res.trainer, res.model)
    out[entry.name] = {{"weights": res.weights(), "states": res.states(), "logs": res.logger.records,
                       "epochs": res.trainer.current_epoch}}
torch.save(out, OUT / "resumed.pt")
"""


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs both processes once for the whole registry; returns their results and the checkpoint folder."""
    tmp = tmp_path_factory.mktemp("resume")
    _run_script(FIRST, tmp, "first")
    _run_script(RESUME, tmp, "resume")
    return {
        "dir": tmp,
        "first": torch.load(tmp / "first.pt", weights_only=True),
        "resumed": torch.load(tmp / "resumed.pt", weights_only=True),
    }


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.oldest_lightning  # one fit per callback and one resume, in fresh processes
@pytest.mark.parametrize("name", NAMES)
def test_resume_in_a_fresh_process_is_bit_identical(resumed: dict[str, Any], name: str) -> None:
    full, res = resumed["first"][name], resumed["resumed"][name]
    assert res["epochs"] == full["epochs"]
    assert_same(full["weights"], res["weights"], "weights")
    assert_same(full["states"], res["states"], "callback state")
    k = full["k_step"]
    assert k == K_EPOCHS * STEPS_PER_EPOCH
    after = [r for r in full["logs"] if r[0] > k]
    assert_same(after, [r for r in res["logs"] if r[0] > k], "logged values after the checkpoint")
    logged = {key for _, metrics in after for key in metrics}
    missing = set(BY_NAME[name].logged) - logged
    # Every run goes on after the checkpoint at epoch K: the entries without early stopping train all N epochs,
    # and early stopping with patience 2 cannot stop before 3 epochs (the GL entry: see the test below).
    if any(isinstance(cb, EarlyStopping) for cb in BY_NAME[name].make()):
        assert K_EPOCHS < full["epochs"] <= N_EPOCHS, (name, full["epochs"])
    else:
        assert full["epochs"] == N_EPOCHS, (name, full["epochs"])
    assert after, f"{name}: nothing logged after the checkpoint"
    assert not missing, f"not logged after resume: {missing}"


def test_early_stopping_entries_stop_after_the_checkpoint(resumed: dict[str, Any]) -> None:
    # The stop decision itself must be exercised across the resume, not before the checkpoint.
    for name in ("early_stopping", "early_stopping_gl"):
        epochs = resumed["first"][name]["epochs"]
        assert K_EPOCHS < epochs < N_EPOCHS, (name, epochs)


# ------------------------------------------------------------------------------------ safe loading
@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_with_our_state_loads_with_weights_only(resumed: dict[str, Any], name: str) -> None:
    ckpt = torch.load(resumed["dir"] / name / "last.ckpt", weights_only=True)
    ours = {cb.state_key for cb in BY_NAME[name].make()}
    assert ours <= set(ckpt["callbacks"]), sorted(ckpt["callbacks"])
    assert "RNGState" in ckpt["callbacks"]


# ---------------------------------------------------------------------------- checkpoint compatibility
@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_written_before_the_callback_was_added_loads_with_a_warning(
    resumed: dict[str, Any], name: str
) -> None:
    with pytest.warns(UserWarning, match="holds no state for this callback") as record:
        run = fit(BY_NAME[name], K_EPOCHS + 1, ckpt_path=resumed["dir"] / "bare" / "last.ckpt")
    assert run.trainer.global_step == (K_EPOCHS + 1) * STEPS_PER_EPOCH
    warned = " ".join(str(w.message) for w in record)
    for cb in BY_NAME[name].make():
        assert type(cb).__name__ in warned


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_with_the_callback_state_loads_into_a_run_without_it(resumed: dict[str, Any], name: str) -> None:
    with pytest.warns(UserWarning, match="callbacks used to create the checkpoint need to be provided"):
        run = fit(None, K_EPOCHS + 1, ckpt_path=resumed["dir"] / name / "last.ckpt")
    assert run.trainer.global_step == (K_EPOCHS + 1) * STEPS_PER_EPOCH
    assert all(torch.isfinite(v).all() for v in run.weights().values())


# ----------------------------------------------------------------------- precision, accumulation, optimizers
@pytest.mark.parametrize("name", NAMES)
def test_bf16_mixed_on_cpu(name: str) -> None:
    entry = BY_NAME[name]
    run = fit(entry, 2, precision="bf16-mixed")
    entry.check(run.callbacks, run.trainer, run.model)
    assert all(torch.isfinite(v).all() for v in run.weights().values())
    assert run.model.net[0].weight.dtype == torch.float32  # master weights stay fp32


@pytest.mark.parametrize("name", NAMES)
def test_gradient_accumulation(name: str) -> None:
    entry = BY_NAME[name]
    run = fit(entry, 2, accumulate_grad_batches=2)
    assert run.trainer.global_step == STEPS_PER_EPOCH  # 2 epochs of 8 batches, one step per 2 batches
    entry.check(run.callbacks, run.trainer, run.model)
    for cb in run.callbacks:
        if hasattr(cb, "run_summary") and "optimizer_steps" in cb.run_summary():
            assert cb.run_summary()["optimizer_steps"] == run.trainer.global_step


@pytest.mark.parametrize("name", NAMES)
def test_two_optimizers_in_manual_optimization(name: str) -> None:
    entry = BY_NAME[name]
    if entry.manual_error:
        with pytest.raises(Exception, match=entry.manual_error):
            fit(entry, 2, model=TwoOptimizerModule(lr=0.1))
        return
    run = fit(entry, 2, model=TwoOptimizerModule(lr=0.1))
    assert run.trainer.global_step == 2 * 2 * STEPS_PER_EPOCH  # Lightning counts each optimizer's step
    entry.check(run.callbacks, run.trainer, run.model)


# ------------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("name", NAMES)
def test_nan_loss_stops_cleanly_with_reason_and_restores_best(name: str) -> None:
    guard = EarlyStopping("val/loss", patience=50, restore_best_weights=True, log_prefix="guard/")
    run = fit(BY_NAME[name], 6, model=NaNAfter(nan_epoch=2, lr=0.1), callbacks=BY_NAME[name].make() + [guard])
    summary = guard.run_summary()
    assert summary["stopped"] and summary["reason"] == "non_finite", summary
    assert summary["stopped_epoch"] == 2 and run.trainer.current_epoch == 3, summary
    assert "not finite" in summary["message"]
    assert summary["restored_epoch"] == summary["best_epoch"] in (0, 1)
    weights = run.weights()
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert_same({k: v for k, v in weights.items()}, dict(guard.restorer.best_weights), "restored weights")


KILL_SCRIPT = """
import os, lightning.pytorch as pl, torch
from torch import nn
from reliability_registry import MomentumModule, RNGState, last_checkpoint, train_loader


class Big(MomentumModule):
    # ~24 MB of parameters so that writing a checkpoint takes a while
    def __init__(self):
        super().__init__(lr=0.01)
        self.ballast = nn.Parameter(torch.zeros(6_000_000))

    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) + 0.0 * self.ballast.sum()


ckpt = last_checkpoint(OUT / "ckpt")
ckpt._every_n_train_steps = 1  # a checkpoint after every step, mid-epoch
trainer = pl.Trainer(accelerator="cpu", max_epochs=1000, callbacks=[ckpt, RNGState()], logger=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0)
trainer.fit(Big(), train_loader())
"""


def test_a_run_killed_while_saving_leaves_the_last_checkpoint_loadable(tmp_path: Path) -> None:
    # $TMPDIR on another filesystem (tmpfs) than the checkpoint: there Lightning's own save copies into the
    # target path. AtomicModelCheckpoint swaps complete files in with os.replace.
    script = tmp_path / "kill.py"
    script.write_text(f"import pathlib\nOUT = pathlib.Path({str(tmp_path)!r})\n" + textwrap.dedent(KILL_SCRIPT))
    env = _script_env()
    if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
        env["TMPDIR"] = "/dev/shm"
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = tmp_path / "ckpt" / "last.ckpt"
    killed_mid_write = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # Kill while a new checkpoint is being written next to a complete one.
            # AtomicCheckpointIO's temporary file: .last.ckpt.<random>.tmp beside last.ckpt.
            if last.exists() and any(last.parent.glob(".last.ckpt.*.tmp")):
                proc.send_signal(signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.0005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert killed_mid_write, f"never saw a checkpoint being written; stderr:\n{err[-3000:]}"
    ckpt = torch.load(last, weights_only=True)  # complete: it unpickles, and holds every part
    assert ckpt["global_step"] >= 1 and "RNGState" in ckpt["callbacks"]
    assert ckpt["state_dict"]["ballast"].numel() == 6_000_000


# ------------------------------------------------------------------------------------------- DDP
DDP_SCRIPT = """
import torch
from reliability_registry import REGISTRY, fit, sharded_train_loader
out = {}
for entry in REGISTRY:
    run = fit(entry, 4, devices=2, strategy="ddp", train=sharded_train_loader(16), use_distributed_sampler=False)
    entry.check(run.callbacks, run.trainer, run.model)
    es = [cb.run_summary() for cb in run.callbacks if type(cb).__name__ == "EarlyStopping"]
    out[entry.name] = {"weights": run.weights(), "epochs": run.trainer.current_epoch,
                       "stops": [(s["stopped"], s["stopped_epoch"], s["best_epoch"]) for s in es],
                       "logs": run.logger.records}
torch.save(out, OUT / f"rank{run.trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_ddp_two_processes_agree_with_each_other_and_with_one_process(tmp_path: Path) -> None:
    run_ddp_script(DDP_SCRIPT, tmp_path, timeout=400)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for entry in REGISTRY:
        r0, r1 = ranks[0][entry.name], ranks[1][entry.name]
        assert_same(r0["weights"], r1["weights"], f"{entry.name}: weights across ranks")
        assert r0["stops"] == r1["stops"] and r0["epochs"] == r1["epochs"], entry.name
        # One process on the same global batches (2 x 16 = 32, in the same order).
        single = fit(entry, 4, train=sharded_train_loader(32))
        es = [cb.run_summary() for cb in single.callbacks if isinstance(cb, EarlyStopping)]
        assert r0["epochs"] == single.trainer.current_epoch, entry.name
        assert r0["stops"] == [(s["stopped"], s["stopped_epoch"], s["best_epoch"]) for s in es], entry.name
        rates = [r for r in r0["logs"] if "reg/dropout_p" in r[1]]
        single_rates = [
            (s, {"reg/dropout_p": m["reg/dropout_p"]}) for s, m in single.logger.records if "reg/dropout_p" in m
        ]
        assert [(s, m["reg/dropout_p"]) for s, m in rates] == [(s, m["reg/dropout_p"]) for s, m in single_rates]
        if not entry.random:  # dropout masks differ between layouts; everything else must agree
            for key, value in single.weights().items():
                torch.testing.assert_close(r0["weights"][key], value, rtol=0, atol=2e-5, msg=f"{entry.name}: {key}")


# ------------------------------------------------------------------ the train entry point under weights_only
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_train_entry_point_tests_the_best_checkpoint_with_weights_only(compose_cfg, tmp_path: Path, model: str) -> None:
    from lightning_reg.app.train import train

    cfg = compose_cfg(
        "trainer=debug", f"model={model}", "callbacks=[default,l2,max_norm,dropout_constant,early_stopping]"
    )
    summary = train(cfg)
    best = summary["best"]["checkpoint"]
    assert summary["best"]["tested"] == best and best.endswith(".ckpt")  # the file was tested, not final weights
    assert summary["test"]["test/acc"] > 0
    ckpt = torch.load(best, weights_only=True)
    keys = set(ckpt["callbacks"])
    assert {"RNGState", "MetricsHistory"} <= keys
    assert any(k.startswith("WeightPenalty") for k in keys) and any(k.startswith("ScheduledDropout") for k in keys)
    assert any(k.startswith("MaxNorm") for k in keys) and any(k.startswith("EarlyStopping") for k in keys)
    last = torch.load(Path(best).parent / "last.ckpt", weights_only=True)
    assert last["global_step"] == summary["global_step"]


def test_pq_check_replayed_after_resume_is_skipped_with_a_warning(tmp_path: Path) -> None:
    def make() -> list:
        return [EarlyStopping("val/loss", criterion="PQ", alpha=1e6, strip=2, train_monitor="train/loss")]

    fit(None, 2, ckpt_dir=tmp_path, callbacks=make())
    with pytest.warns(UserWarning, match="check of epoch 1 is skipped after resuming"):
        run = fit(None, 3, ckpt_path=tmp_path / "last.ckpt", callbacks=make())
    es = next(cb for cb in run.callbacks if isinstance(cb, EarlyStopping))
    assert es.check_epochs == [0, 2]  # epoch 1's check could not be replayed; epoch 2's ran normally


def test_atomic_model_checkpoint_keeps_lightnings_state_key_as_its_settings_change() -> None:
    """The key is kept between Lightning's reads (one per hook and callback), and follows a changed setting."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    ours = AtomicModelCheckpoint(monitor="val/acc", mode="max")
    theirs = ModelCheckpoint(monitor="val/acc", mode="max")
    assert ours.state_key == theirs.state_key
    assert ours.state_key is ours.state_key  # kept, not rebuilt
    ours.monitor = theirs.monitor = "val/loss"
    ours.mode = theirs.mode = "min"
    assert ours.state_key == theirs.state_key and "val/loss" in ours.state_key
