"""Fine-tune-style training of a timm ViT on MNIST with scheduled drop-path, EMA weights and early stopping.

The ViT is built from its config with random weights (nothing is downloaded) and adapted to MNIST's 28×28
grey images by its patch embedding: ``img_size=28, patch_size=7, in_chans=1`` (16 patches). Our callbacks
need no change to the model:

- ``ScheduledDropout(modules=["DropPath"], depth_scale=True)`` raises timm's drop-path rates linearly over the
  run, deeper blocks more (the l-th of L DropPath modules gets l/L of the rate; timm builds none for block 0,
  whose initial rate is 0);
- Lightning's ``EMAWeightAveraging`` keeps an exponential moving average that validation evaluates;
- ``EarlyStopping(restore_best_weights=True)`` stops when val/acc stalls and restores the evaluated (EMA)
  weights of the best epoch;
- ``WeightPenalty(l2=...)`` decays the kernels only (timm's ``no_weight_decay()``: pos_embed, cls_token).

Run (the real MNIST subset at ../shared/data, or any folder holding MNIST/raw):

    python examples/timm_vit_mnist.py --data-dir ../shared/data [--max-epochs 8] [--train-subset 2000]
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_reg import EarlyStopping, ScheduledDropout, WeightPenalty
from lightning_reg.data import MNISTDataModule
from lightning_reg.models.zoo import ImageClassifier, timm_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build(max_epochs: int, depth: int = 4) -> tuple[ImageClassifier, list[pl.Callback]]:
    from lightning.pytorch.callbacks import EMAWeightAveraging

    net = partial(timm_model, "vit_tiny_patch16_224", img_size=28, patch_size=7, depth=depth, drop_path_rate=0.1)
    model = ImageClassifier(
        net, num_classes=10, input_shape=(1, 28, 28), optimizer=partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.0)
    )
    callbacks = [
        ScheduledDropout(
            {"name": "linear", "start": 0.0, "end": 0.1, "end_at": max_epochs},
            modules=["DropPath"],
            depth_scale=True,
            inject=None,
        ),
        EMAWeightAveraging(decay=0.99),
        EarlyStopping("val/acc", mode="max", patience=3, restore_best_weights=True),
        WeightPenalty(l2=5e-5),
    ]
    return model, callbacks


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--max-epochs", type=int, default=8)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--limit-batches", type=float, default=1.0, help="fraction (or count) of batches per epoch")
    args = parser.parse_args(argv)
    pl.seed_everything(0, workers=True)
    dm = MNISTDataModule(data_dir=str(args.data_dir), batch_size=128, train_subset=args.train_subset, normalize=True)
    model, callbacks = build(args.max_epochs)
    limit = int(args.limit_batches) if args.limit_batches > 1 else args.limit_batches
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        limit_train_batches=limit,
        limit_val_batches=limit,
        limit_test_batches=limit,
    )
    trainer.fit(model, datamodule=dm)
    rates = [round(float(m.drop_prob), 4) for m in model.modules() if type(m).__name__ == "DropPath"]
    stop = callbacks[2]
    result = trainer.test(model, datamodule=dm, verbose=False)[0]
    print(f"drop-path rates at the end, block by block: {rates}")
    print(
        f"epochs trained {trainer.current_epoch}, best val/acc {float(stop.best_score):.4f} "
        f"(restored, EMA weights), test/acc {result['test/acc']:.4f}"
    )
    return {
        "test/acc": result["test/acc"],
        "best_val_acc": float(stop.best_score),
        "epochs": trainer.current_epoch,
        "rates": rates,
    }


if __name__ == "__main__":
    main()
