"""Our callbacks with Lightning's own weight averaging (EMAWeightAveraging, StochasticWeightAveraging)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from lightning.pytorch import callbacks as pl_callbacks

from lightning_reg import EarlyStopping, MaxNorm, WeightPenalty
from lightning_reg._lightning_internals import HAS_WEIGHT_AVERAGING, LIGHTNING_VERSION

from reliability_registry import MomentumModule, assert_same, fit, val_loader

pytestmark = pytest.mark.skipif(
    not HAS_WEIGHT_AVERAGING, reason=f"EMAWeightAveraging needs Lightning >= 2.6; this is {LIGHTNING_VERSION}"
)


def _model() -> MomentumModule:
    pl.seed_everything(0)
    return MomentumModule(lr=0.1)


def test_early_stopping_with_ema_restores_the_average_that_was_evaluated() -> None:
    es = EarlyStopping("val/loss", patience=2, restore_best_weights=True)
    ema = pl_callbacks.EMAWeightAveraging(decay=0.9)
    run = fit(None, 6, model=_model(), callbacks=[es, ema])  # ES before EMA: the order must not matter
    assert es.best_epoch is not None
    # Validate the restored weights in a fresh trainer: the score is the best one seen, so these are the
    # averaged weights validation evaluated, not the trained ones of that epoch.
    result = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    ).validate(run.model, val_loader(), verbose=False)
    assert result[0]["val/loss"] == pytest.approx(es.best_value, abs=1e-6)
    assert_same(run.weights(), {k: v for k, v in es.restorer.best_weights.items()}, "restored weights")


def test_penalty_and_max_norm_act_on_the_trained_weights_not_the_average() -> None:
    penalty, norm = WeightPenalty(l2=1e-3), MaxNorm(0.5)
    ema = pl_callbacks.EMAWeightAveraging(decay=0.9)
    seen: dict[str, bool] = {}

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            trained = {id(p) for p in pl_module.parameters()}
            averaged = {id(p) for p in ema._average_model.parameters()}
            selected = {id(p.param) for p in penalty._selected} | {id(p.param) for p in norm._selected}
            seen["trained"] = selected <= trained
            seen["disjoint"] = not (selected & averaged)
            seen["bounded"] = float(pl_module.net[0].weight.norm(dim=1).max()) <= 0.5 + 1e-6

    fit(None, 2, model=_model(), callbacks=[penalty, norm, ema, Probe()])
    assert seen == {"trained": True, "disjoint": True, "bounded": True}


@pytest.mark.parametrize("kind", ["ema", "swa"])
def test_resume_with_weight_averaging_is_bit_identical(kind: str, tmp_path) -> None:
    def callbacks():
        avg = (
            pl_callbacks.EMAWeightAveraging(decay=0.9)
            if kind == "ema"
            else pl_callbacks.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2)
        )
        return [WeightPenalty(l2=1e-3), EarlyStopping("val/loss", patience=10, restore_best_weights=True), avg]

    full = fit(None, 4, model=_model(), callbacks=callbacks())
    fit(None, 2, model=_model(), callbacks=callbacks(), ckpt_dir=tmp_path)
    resumed = fit(None, 4, model=_model(), callbacks=callbacks(), ckpt_path=tmp_path / "last.ckpt")
    assert_same(full.weights(), resumed.weights(), "weights")
    assert_same(full.states(), resumed.states(), "callback states")
    if kind == "ema":
        avg_full = full.callbacks[2]._average_model.state_dict()
        avg_res = resumed.callbacks[2]._average_model.state_dict()
        assert_same(avg_full, avg_res, "average")
