"""WeightPenalty and MaxNorm under 2-process CPU DDP: identical updates on every rank, equal to a loss penalty."""

from __future__ import annotations

import pytest
import torch

from helpers import run_ddp_script

SCRIPT = """
import torch, lightning.pytorch as pl
from torch.utils.data import DataLoader
from helpers import TinyModule, make_blobs
from lightning_reg import MaxNorm, WeightPenalty


class InLoss(TinyModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        ws = [self.net[0].weight, self.net[-1].weight]
        return loss + 1e-3 * sum(w.abs().sum() for w in ws) + 1e-2 * sum(w.pow(2).sum() for w in ws)


def run(model, callbacks, accumulate=1):
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, limit_train_batches=8,
                         accumulate_grad_batches=accumulate, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(make_blobs(512), batch_size=16))
    return trainer, {k: v.detach().clone() for k, v in model.state_dict().items()}


out = {}
torch.manual_seed(0)
trainer, out["callback"] = run(TinyModule(), [WeightPenalty(l1=1e-3, l2=1e-2)], accumulate=2)
torch.manual_seed(0)
_, out["in_loss"] = run(InLoss(), [], accumulate=2)
torch.manual_seed(0)
_, out["bare"] = run(TinyModule(), [], accumulate=2)
torch.manual_seed(0)
_, out["proximal_maxnorm"] = run(TinyModule(lr=1.0), [WeightPenalty(l1=1e-2, mode="proximal"), MaxNorm(0.5)])
torch.save(out, OUT / f"rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_ddp_two_processes_identical_weights_and_equal_to_penalty_in_loss(tmp_path):
    run_ddp_script(SCRIPT, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for case in ranks[0]:
        for key, value in ranks[0][case].items():
            assert torch.equal(value, ranks[1][case][key]), f"{case}: {key} differs across ranks"
    out = ranks[0]
    for key in out["callback"]:
        torch.testing.assert_close(out["callback"][key], out["in_loss"][key], rtol=0, atol=1e-6)
    assert max(float((out["callback"][k] - out["bare"][k]).abs().max()) for k in out["bare"]) > 1e-3
    constrained = out["proximal_maxnorm"]
    for key in ("net.0.weight", "net.2.weight"):
        assert float(constrained[key].norm(dim=1).max()) <= 0.5 + 1e-6
        assert int((constrained[key] == 0).sum()) > 0
