"""ScheduledDropout under 2-process CPU DDP: every rank sets the same rate at every step."""

from __future__ import annotations

import json

import pytest

from lightning_reg import Linear

from helpers import run_ddp_script

BODY = """
import json
import lightning.pytorch as pl
import torch
from helpers import TinyModule, loaders
from lightning_reg import Linear, ScheduledDropout
from scheduled_dropout_helpers import RateProbe

pl.seed_everything(0)
probe = RateProbe()
cb = ScheduledDropout(Linear(start=0.0, end=0.35, end_at=7), inject=["ReLU"])
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, limit_val_batches=1, callbacks=[cb, probe])
model = TinyModule()
train, val = loaders()
trainer.fit(model, train, val)
(OUT / f"rank{trainer.global_rank}.json").write_text(json.dumps({
    "records": probe.records,
    "injected": cb.injected,
    "weights": [p.detach().double().sum().item() for p in model.parameters()],
}))
"""


@pytest.mark.slow
def test_all_ranks_use_the_same_rate_sequence(tmp_path):
    run_ddp_script(BODY, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    sched = Linear(start=0.0, end=0.35, end_at=7)
    # 256 samples / 2 ranks / batch 32 = 4 batches per rank per epoch, 2 epochs = 8 optimizer steps.
    for rank in (r0, r1):
        assert rank["injected"] == ["net.1.injected_dropout"]
        assert [r["step"] for r in rank["records"]] == list(range(8))
        assert [r["p"] for r in rank["records"]] == pytest.approx([sched(t) for t in range(8)], abs=1e-12)
    assert [r["p"] for r in r0["records"]] == [r["p"] for r in r1["records"]]
    assert r0["weights"] == r1["weights"]  # DDP kept the replicas in sync with injected dropout in place
