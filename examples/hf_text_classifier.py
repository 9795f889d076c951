"""A Hugging Face text classifier (a small BERT with random weights) with WeightPenalty and ScheduledDropout.

The data are synthetic token sequences (nothing is downloaded): the label is which third of the vocabulary the
first token falls in, so the model has something to learn. The LightningModule is lightning_reg's
``SequenceClassifier`` around ``BertForSequenceClassification``; the callbacks work on any model:

- ``WeightPenalty(l2=..., embeddings=False)`` decays the Linear kernels, leaves biases, LayerNorms and (by
  choice here) the embeddings alone; its fit-start line counts the tensors per module type;
- ``ScheduledDropout`` drives every ``nn.Dropout`` of the model (hidden and attention) along one schedule, from
  0.0 to 0.2 over the run.

    python examples/hf_text_classifier.py [--max-epochs 6] [--n 2048]
"""

from __future__ import annotations

import argparse
import os
from functools import partial

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_reg import ScheduledDropout, WeightPenalty
from lightning_reg.models.zoo import SequenceClassifier, hf_sequence_classifier

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB, LENGTH, CLASSES = 96, 16, 3


def tokens(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)  # 0 is the padding id
    return TensorDataset(ids, (ids[:, 0] * CLASSES) // VOCAB)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--n", type=int, default=2048, help="training sequences")
    args = parser.parse_args(argv)
    pl.seed_everything(0, workers=True)
    net = partial(
        hf_sequence_classifier,
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=LENGTH,
        num_labels=CLASSES,
    )
    model = SequenceClassifier(
        net, num_classes=CLASSES, optimizer=partial(torch.optim.AdamW, lr=2e-3, weight_decay=0.0)
    )
    dropout = ScheduledDropout({"name": "linear", "start": 0.0, "end": 0.2, "end_at": args.max_epochs})
    penalty = WeightPenalty(l2=1e-4, embeddings=False)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[penalty, dropout],
    )
    train = DataLoader(tokens(args.n, 0), batch_size=64, shuffle=True)
    val = DataLoader(tokens(512, 1), batch_size=256)
    trainer.fit(model, train, val)
    rates = sorted({round(m.p, 4) for m in model.modules() if isinstance(m, torch.nn.Dropout)})
    summary = penalty.run_summary()
    acc = float(trainer.callback_metrics["val/acc"])
    print(
        f"dropout rates at the end: {rates}; penalized {summary['penalized_tensors']} tensors over "
        f"{summary['optimizer_steps']} steps; val/acc {acc:.4f}"
    )
    return {"val_acc": acc, "rates": rates, **summary}


if __name__ == "__main__":
    main()
