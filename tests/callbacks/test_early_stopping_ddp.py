"""EarlyStopping under 2-process CPU DDP: same stop epoch on both ranks, same best weights restored on both."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import run_ddp_script

SCRIPT = """
import lightning.pytorch as pl
import torch
from test_early_stopping import ScriptedModule, make_loaders
from lightning_reg import EarlyStopping

# Unsynced per-rank values whose best epochs differ (rank 0: epoch 2, rank 1: epoch 4): the callback must
# follow rank 0 on every rank, or the ranks would restore different weights.
RANK_VALUES = {0: [1.0, 0.8, 0.6, 0.7, 0.65, 0.62, 0.7, 0.9, 0.9, 0.9],
               1: [1.0, 0.9, 0.8, 0.7, 0.5, 0.9, 0.9, 0.9, 0.9, 0.9]}
pl.seed_everything(0)
module = ScriptedModule(RANK_VALUES[0], rank_values=RANK_VALUES)
es = EarlyStopping("val/score", patience=3, restore_best_weights=True)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=10, callbacks=[es], logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0)
train, val = make_loaders()
trainer.fit(module, train, val)
torch.save({"state": {k: v.clone() for k, v in module.state_dict().items()},
            "snapshots": module.snapshots, "summary": es.run_summary(), "history": es.history,
            "current_epoch": trainer.current_epoch}, OUT / f"rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_ddp_every_rank_restores_the_same_best_weights(tmp_path: Path):
    run_ddp_script(SCRIPT, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for r in (r0, r1):
        assert r["summary"]["stopped_epoch"] == 5 and r["summary"]["reason"] == "patience"
        assert r["summary"]["best_epoch"] == 2 and r["summary"]["restored_epoch"] == 2
        assert r["current_epoch"] == 6
        assert r["history"] == pytest.approx([1.0, 0.8, 0.6, 0.7, 0.65, 0.62])
    # DDP keeps parameters in sync, so both ranks' snapshots agree; the restored weights are epoch 2's.
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
        assert torch.equal(v, r0["snapshots"][2][k]), k
        assert torch.equal(r0["snapshots"][2][k], r1["snapshots"][2][k]), k
    assert not torch.equal(r0["state"]["net.0.weight"], r0["snapshots"][5]["net.0.weight"])
