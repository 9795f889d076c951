"""The source material's MNIST case study in Keras and in lightning_reg, side by side (issue #27).

For each variant of ``experiment=seed003_mnist_mlp`` (baseline, L2 1e-4, L1 1e-4, dropout 0.25, dropout + ZCA,
dropout + early stopping) and each seed, it trains

- ``keras``: the source's Keras model (``KERAS_BACKEND=torch``): ``Sequential`` of ``Dense(500, relu)`` x5 and
  ``Dense(10, softmax)`` with Keras' defaults (glorot-uniform kernels, zero biases), ``kernel_regularizer``
  ``l2(1e-4)``/``l1(1e-4)`` on every layer, ``Dropout(0.25)`` after every hidden layer, ``Adam(1e-3)``, batch 128,
  10 epochs, inputs x/255; ZCA with the source's (Keras 2.x) formula, around the per-channel mean, fitted on the
  training split; early stopping on ``val_accuracy``, patience 2, best weights restored (we test the best
  checkpoint);
- ``ours``: ``python -m lightning_reg.train experiment=seed003_mnist_mlp variant/seed003_mnist_mlp=<v> seed=<s>``
  (in process, through :func:`lightning_reg.app.train.train`),

on the same train / validation / test tensors (our DataModule's seeded 70:30 split, taken from it for Keras), and
prints test accuracy as mean ± std over the seeds, per variant and side.

    python -m benchmarks.keras_parity                       # 6 variants x 3 seeds x 2 sides: long on a CPU
    python -m benchmarks.keras_parity --quick               # smoke test: baseline and L1, 1 seed, 1 epoch, 1,000 images
    python -m benchmarks.keras_parity --variants baseline l1 --seeds 1 2 3

Needs the ``parity`` extra (``keras>=3.15``). Uses the MNIST files under ``--data-dir`` when present, generated
MNIST-shaped data otherwise (then the accuracies say nothing about MNIST).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ["KERAS_BACKEND"] = "torch"

from benchmarks.common import base_parser, describe, json_path, machine_info, mnist_root, print_table, quiet_lightning

VARIANTS = ("baseline", "l2", "l1", "dropout", "dropout_zca", "dropout_early_stopping")


def compose(variant: str, seed: int, data_dir: Path, out_dir: Path, extra: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from lightning_reg.app.train import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(
            "train",
            overrides=[
                "experiment=seed003_mnist_mlp",
                f"variant/seed003_mnist_mlp={variant}",
                f"seed={seed}",
                "logger=none",
                *extra,
            ],
        )
    with open_dict(cfg):
        cfg.pop("hydra", None)
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.data_dir = str(data_dir)
    GlobalHydra.instance().clear()
    return cfg


def splits(cfg: Any) -> dict[str, tuple[Any, Any]]:
    """Our DataModule's train / val / test split as float x/255 arrays ``(n, 784)`` and labels, for Keras."""
    import torch
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("fit")
    dm.setup("test")
    out = {}
    for name, ds in (("train", dm.data_train), ("val", dm.data_val), ("test", dm.data_test)):
        x = ds.x.float() / 255.0 if ds.x.dtype == torch.uint8 else ds.x.float()
        out[name] = (x.reshape(len(x), -1).numpy(), ds.y.numpy())
    return out


def keras2_zca(train: Any, epsilon: float) -> tuple[Any, Any]:
    """Keras 2.x's ZCA (the source's Keras): per-channel mean, ``U diag(1/sqrt(s + eps)) U^T`` of ``X^T X / n``."""
    import numpy as np

    mean = train.mean()
    flat = train - mean
    sigma = flat.T @ flat / flat.shape[0]
    u, s, _ = np.linalg.svd(sigma)
    return mean, (u * (1.0 / np.sqrt(s[np.newaxis] + epsilon))).dot(u.T)


def run_keras(cfg: Any, data: dict[str, tuple[Any, Any]], variant: str, seed: int, epochs: int) -> dict[str, float]:
    import keras

    keras.utils.set_random_seed(seed)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = data["train"], data["val"], data["test"]
    if variant == "dropout_zca":
        mean, w = keras2_zca(x_tr, float(cfg.data.augment.zca_epsilon))
        x_tr, x_va, x_te = ((x - mean) @ w for x in (x_tr, x_va, x_te))
    reg = {"l2": keras.regularizers.l2(1e-4), "l1": keras.regularizers.l1(1e-4)}.get(variant)
    dropout = float(cfg.model.dropout)
    layers: list[Any] = [keras.Input((x_tr.shape[1],))]
    for width in cfg.model.hidden_sizes:
        layers.append(keras.layers.Dense(width, activation="relu", kernel_regularizer=reg))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax", kernel_regularizer=reg))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(float(cfg.optimizer.lr)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = []
    if variant == "dropout_early_stopping":
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=2, restore_best_weights=True))
    t0 = time.perf_counter()
    hist = model.fit(
        x_tr,
        y_tr,
        batch_size=int(cfg.data.batch_size),
        epochs=epochs,
        validation_data=(x_va, y_va),
        callbacks=callbacks,
        verbose=0,
    )
    loss, acc = model.evaluate(x_te, y_te, batch_size=512, verbose=0)
    return {
        "test_acc": float(acc),
        "test_loss": float(loss),
        "epochs": len(hist.history["loss"]),
        "s": time.perf_counter() - t0,
    }


def run_ours(cfg: Any) -> dict[str, float]:
    from lightning_reg.app.train import train

    t0 = time.perf_counter()
    summary = train(cfg)
    if summary["status"] != "completed":
        raise RuntimeError(f"our run did not complete: {summary}")
    return {
        "test_acc": float(summary["test"]["test/acc"]),
        "test_loss": float(summary["test"]["test/loss"]),
        "s": time.perf_counter() - t0,
    }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's (10); --quick: 1")
    args = parser.parse_args(argv)
    try:
        import keras
    except ModuleNotFoundError:
        print('keras is not installed: pip install -e ".[parity]"', file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    quiet_lightning()
    variants = args.variants or (["baseline", "l1"] if args.quick else list(VARIANTS))
    seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    epochs = args.epochs or (1 if args.quick else 10)
    root, source = mnist_root(args.data_dir)
    extra = [f"trainer.max_epochs={epochs}", "trainer.accelerator=cpu"]
    if args.quick:
        extra += ["data.train_subset=1000"]
    info = machine_info("cpu")
    print(f"keras {keras.__version__} ({keras.backend.backend()} backend); {source}")
    print(describe(info))
    results: dict[str, dict[str, list[dict[str, float]]]] = {v: {"keras": [], "ours": []} for v in variants}
    with tempfile.TemporaryDirectory(prefix="keras_parity_") as tmp:
        for variant in variants:
            for seed in seeds:
                cfg = compose(variant, seed, root, Path(tmp) / f"{variant}_{seed}", extra)
                data = splits(cfg)
                k = run_keras(cfg, data, variant, seed, epochs)
                o = run_ours(cfg)
                results[variant]["keras"].append(k)
                results[variant]["ours"].append(o)
                print(
                    f"{variant} seed {seed}: keras {k['test_acc']:.4f} ({k['s']:.0f} s), "
                    f"ours {o['test_acc']:.4f} ({o['s']:.0f} s)",
                    flush=True,
                )
    rows = []
    ratios = {}
    for variant in variants:
        k_acc = [r["test_acc"] for r in results[variant]["keras"]]
        o_acc = [r["test_acc"] for r in results[variant]["ours"]]
        ratios[variant] = statistics.mean(o_acc) / statistics.mean(k_acc)
        rows.append(
            [variant, mean_std(k_acc), mean_std(o_acc), f"{statistics.mean(o_acc) - statistics.mean(k_acc):+.4f}"]
        )
    print(f"\ntest accuracy over seeds {seeds}, {epochs} epoch(s), train images: {len(data['train'][1])}")
    print_table(["variant", "keras", "ours (seed003_mnist_mlp)", "ours - keras"], rows)
    out = json_path(args, "keras_parity")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "keras_parity",
        "machine": info,
        "keras": keras.__version__,
        "data": source,
        "seeds": seeds,
        "epochs": epochs,
        "results": results,
        "ratios": ratios,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"JSON: {out}")
    print("ratio ours/keras mean test acc: " + ", ".join(f"{v} {r:.3f}" for v, r in ratios.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
