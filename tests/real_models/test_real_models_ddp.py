"""DDP with 2 CPU processes on real architectures: a Hugging Face BERT and a torchvision ResNet-18 (with
stochastic depth), each with all of its family's callbacks. Both ranks must end with identical weights and
callback states, and the regularizers must have acted (penalty steps counted, max-norm bound held, dropout
or stochastic-depth rates scheduled)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import run_ddp_script

pytestmark = pytest.mark.slow

SCRIPT = """
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import lightning.pytorch as pl
import torch
from reliability_registry import FAMILY
from lightning_reg import MaxNorm, WeightPenalty

fam = FAMILY[{name!r}]
pl.seed_everything(0)
model = fam.build()
callbacks = fam.make()
train, val = fam.loaders(batch_size=8)
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=callbacks, deterministic=True)
trainer.fit(model, train, val)
rank = trainer.global_rank
weights = {{k: v.detach().clone() for k, v in model.state_dict().items()}}
states = {{type(cb).__name__: cb.state_dict() for cb in callbacks}}
norm = next(cb for cb in callbacks if isinstance(cb, MaxNorm))
bound = max(float(s.param.detach().flatten(1).norm(dim=1).max()) for s in norm._selected)
penalty = next(cb for cb in callbacks if isinstance(cb, WeightPenalty))
rates = sorted({{round(float(getattr(m, "p", getattr(m, "drop_prob", 0.0)) or 0.0), 6)
                for m in model.modules() if hasattr(m, "p") or hasattr(m, "drop_prob")}})
torch.save({{"weights": weights, "states": states, "world": trainer.world_size, "steps": trainer.global_step,
            "bound": bound, "max_norm": norm.max_norm, "penalty_steps": penalty.run_summary()["optimizer_steps"],
            "rates": rates}}, OUT / f"rank{{rank}}.pt")
"""


@pytest.mark.parametrize("name,module", [("hf_bert", "transformers"), ("resnet18", None)])
def test_two_ddp_ranks_of_a_real_model_end_identical(name: str, module: str | None, tmp_path: Path) -> None:
    if module:
        pytest.importorskip(module)
    run_ddp_script(SCRIPT.format(name=name), tmp_path, timeout=400)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == 2 and r0["steps"] == r1["steps"] == 4  # 32 samples / 2 ranks / batch 8, 2 epochs
    assert r0["weights"].keys() == r1["weights"].keys()
    for key in r0["weights"]:
        assert torch.equal(r0["weights"][key], r1["weights"][key]), key
    assert r0["states"].keys() == r1["states"].keys()
    assert repr(r0["states"]) == repr(r1["states"])
    assert r0["bound"] <= r0["max_norm"] + 1e-5
    assert r0["penalty_steps"] == 4
    assert r0["rates"] == r1["rates"] and any(0.0 < p < 1.0 for p in r0["rates"])
