"""LightningCLI over lightning_reg's reference MLP and the embedded digits data, with every callback typed.

``pip install "lightning-reg[cli]"`` (jsonargparse), then, from the repository root:

    python examples/main.py fit --trainer.max_epochs=20 \\
        --trainer.callbacks+=lightning_reg.WeightPenalty --trainer.callbacks.l2=1e-4 \\
        --trainer.callbacks+=lightning_reg.EarlyStopping --trainer.callbacks.monitor=val/loss \\
        --trainer.callbacks.restore_best_weights=true
    python examples/main.py fit --config examples/main_config.yaml     # the same callbacks from a YAML
    python examples/main.py test --config examples/main_config.yaml --ckpt_path=<run>/checkpoints/<best>.ckpt
    python examples/main.py fit --help                                 # every model, data and trainer option
    python examples/main.py fit --trainer.callbacks+=lightning_reg.MaxNorm --trainer.callbacks.help  # one callback's

Each ``--trainer.callbacks.<arg>`` sets an argument of the callback added last; a mistyped value
(``--trainer.callbacks.patience=three``) is refused before anything is built. The model is
:class:`lightning_reg.models.MLPClassifier` (``--model.hidden_sizes=[256,128] --model.dropout=0.2``; its optimizer
with ``--model.optimizer=AdamW --model.optimizer.lr=3e-3``), the data :class:`lightning_reg.data.DigitsDataModule`
(``--data.batch_size=32 --data.train_subset=150``, and ``--data.augment='{rotation_range: 10}'``). Logs and
checkpoints go to ``lightning_logs/version_N/`` under the working directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from lightning_reg.app.run_log import quiet_third_party
from lightning_reg.data import DigitsDataModule
from lightning_reg.models import MLPClassifier


def main(args: Sequence[str] | None = None) -> LightningCLI:
    """Parse ``args`` (the command line when None), build model, data and trainer, and run the subcommand."""
    quiet_third_party()  # Lightning's litlogger tip and torch's LeafSpec warning, as in the Hydra entry point
    return LightningCLI(MLPClassifier, DigitsDataModule, args=None if args is None else list(args))


if __name__ == "__main__":
    main()
