"""The digits TPE search as a plain Optuna script: what a user would write instead of our sweeper.

The same search as ``hparams_search=digits_optuna`` (conf/hparams_search/digits_optuna.yaml): TPE with seed
1234 and 5 start-up trials, Optuna's percentile pruner keeping the best 25 % after 2 trials (our
``top_quarter``), 20 trials maximizing the best epoch's ``val/acc``, over ``optimizer.lr`` (log 1e-4..1e-2),
``model.dropout`` (0..0.5) and ``data.batch_size`` (32, 64, 128). Each trial trains the same model and data
as the sweep's job, in this process: our MLPClassifier (128-64) with Adam on DigitsDataModule, seed 42, up to
30 epochs, ``deterministic=True``, with optuna-integration's ``PyTorchLightningPruningCallback`` and, as in
Optuna's own Lightning example, the default logger and no checkpoints. An in-memory study: ``create_study`` +
``study.optimize``, nothing else.

``--durable``: what the same script needs for what our sweep keeps (a study other workers and a resumed run can
share, and trials that resume after a preemption): the study in an SQLite file, and Lightning's own
``ModelCheckpoint`` twice, the best epoch by ``val/acc`` and ``last.ckpt`` every epoch (as our
``callbacks=default``; Lightning's saving, not atomic).

Needs ``pip install "lightning-reg[bench]"`` (optuna-integration). Writes the trials (state, value, epochs,
start and end times, seconds in ``trainer.fit``) as JSON for benchmarks/sweep_pruning.py.

    python -m benchmarks.plain_optuna_digits --out plain.json [--n-trials 20] [--max-epochs 30] [--threads N] [--durable]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--durable", action="store_true", help="SQLite study, best and last checkpoints each trial")
    args = parser.parse_args(argv)

    import functools
    import os
    import tempfile

    import lightning.pytorch as pl
    import optuna
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from optuna_integration import PyTorchLightningPruningCallback

    from lightning_reg.data import DigitsDataModule
    from lightning_reg.models import MLPClassifier

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="plain_optuna_")
    os.chdir(workdir)  # the default logger writes lightning_logs/ here
    fits: dict[int, dict[str, Any]] = {}

    class BestValAcc(pl.Callback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
                self.values.append(float(trainer.callback_metrics["val/acc"]))

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-2, log=True)
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        batch_size = trial.suggest_categorical("data.batch_size", [32, 64, 128])
        pl.seed_everything(42, workers=True)
        data = DigitsDataModule(batch_size=batch_size, seed=0)
        model = MLPClassifier(dropout=dropout, optimizer=functools.partial(torch.optim.Adam, lr=lr))
        best = BestValAcc()
        callbacks: list[pl.Callback] = [best, PyTorchLightningPruningCallback(trial, monitor="val/acc")]
        if args.durable:
            ckpt_dir = os.path.join(workdir, f"trial_{trial.number}")
            callbacks += [
                ModelCheckpoint(dirpath=ckpt_dir, monitor="val/acc", mode="max", save_top_k=1),
                ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1),
            ]
        trainer = pl.Trainer(
            max_epochs=args.max_epochs,
            accelerator="cpu",
            devices=1,
            deterministic=True,
            enable_checkpointing=args.durable,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        )
        started = time.perf_counter()
        try:
            trainer.fit(model, datamodule=data)
        finally:
            fits[trial.number] = {"fit_s": time.perf_counter() - started, "epochs": len(best.values)}
        return max(best.values)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{os.path.join(workdir, 'optuna.db')}" if args.durable else None,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=1234, n_startup_trials=5, n_ei_candidates=24),
        pruner=optuna.pruners.PercentilePruner(25.0, n_startup_trials=2, n_warmup_steps=0, interval_steps=1),
    )
    study.optimize(objective, n_trials=args.n_trials)
    trials = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.params,
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
            **fits.get(t.number, {}),
        }
        for t in study.trials
    ]
    best_trial = study.best_trial
    args.out.write_text(
        json.dumps(
            {"trials": trials, "best_value": best_trial.value, "best_params": best_trial.params, "end": time.time()}
        )
    )


if __name__ == "__main__":
    main()
