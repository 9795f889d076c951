"""The registry behind tests/reliability/test_reliability.py: every callback with its typical configuration, and a harness.

Each :class:`Entry` builds fresh callback instances and knows what they log and how to check that they did
their job after a fit. The harness (:func:`fit`) trains the small real model of ``tests/helpers.py``
(Linear-ReLU-Linear on Gaussian blobs, SGD with momentum, shuffled batches) with the entry's callbacks plus
``RNGState``, an in-memory logger and optionally the shipped ``last_checkpoint`` configuration
(:class:`~lightning_reg.AtomicModelCheckpoint`, written at the end of every validation). It is imported by
the tests and by the scripts they run in fresh processes (resume, DDP).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from lightning_reg import (
    ActivityRegularization,
    AtomicModelCheckpoint,
    AugMixJSD,
    EarlyStopping,
    LabelSmoothing,
    MaxNorm,
    MinMaxNorm,
    NonNeg,
    RestoreBestWeights,
    RNGState,
    ScheduledDropout,
    UnitNorm,
    WeightPenalty,
)

from helpers import MemoryLogger, TinyModule, make_blobs
from helpers import fit as shared_fit

STEPS_PER_EPOCH = 8  # 256 samples, batch 32
OURS = (
    ActivityRegularization,
    WeightPenalty,
    MaxNorm,
    MinMaxNorm,
    UnitNorm,
    NonNeg,
    ScheduledDropout,
    LabelSmoothing,
    AugMixJSD,
    EarlyStopping,
    RestoreBestWeights,
    RNGState,
)


class MomentumModule(TinyModule):
    """The helpers' user-style module with SGD + momentum (optimizer state must survive resume too)."""

    accepts_soft_targets = True  # its F.cross_entropy takes probability targets (LabelSmoothing)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class TwoOptimizerModule(TinyModule):
    """Manual optimization with one optimizer per layer (Lightning's way of using several optimizers)."""

    accepts_soft_targets = True

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt_a, opt_b = self.optimizers()
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        for opt in (opt_a, opt_b):
            opt.zero_grad()
        self.manual_backward(loss)
        opt_a.step()
        opt_b.step()
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.net[0].parameters(), lr=self.lr),
            torch.optim.SGD(self.net[-1].parameters(), lr=self.lr),
        ]


class NaNAfter(TinyModule):
    """Returns a NaN loss from epoch ``nan_epoch`` on (a diverging run), so the weights turn NaN."""

    accepts_soft_targets = True

    def __init__(self, nan_epoch: int = 2, **kw: Any) -> None:
        super().__init__(**kw)
        self.nan_epoch = nan_epoch

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.current_epoch >= self.nan_epoch else loss


class FeatureMapReLU(nn.Module):
    """The hidden ReLU applied to the 32 hidden units seen as ``(N, 2, 4, 4)`` maps: an injection point (``act``) for
    the feature-map kinds (spatial dropout, DropBlock) that keeps the MLP's parameters and state_dict keys."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x.view(x.shape[0], 2, 4, 4)).flatten(1)


# --------------------------------------------------------------------------------------------- checks
def _ours(callbacks: list[pl.Callback], kind: type) -> list[Any]:
    return [c for c in callbacks if isinstance(c, kind)]


def check_penalty(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, WeightPenalty):
        summary = cb.run_summary()
        assert summary["optimizer_steps"] > 0, summary
        assert summary["penalized_tensors"] == (2 if cb.spec.bias_rule is None else 4), summary
        for key in ("final_l1", "final_l2"):
            if key in summary:
                assert math.isfinite(summary[key]) and summary[key] > 0, summary
        if cb.mode == "proximal":
            assert summary["final_l1_zero_frac"] > 0, summary


def check_max_norm(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, MaxNorm):
        assert cb.run_summary()["optimizer_steps"] > 0
        for name in ("net.0.weight", "net.2.weight"):
            weight = model.get_parameter(name)
            assert float(weight.detach().float().norm(dim=1).max()) <= cb.max_norm * (1 + 1e-5), name


def check_keras_constraints(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, (MinMaxNorm, UnitNorm, NonNeg)):
        assert cb.run_summary()["optimizer_steps"] > 0
        for name in [p.name for p in cb._selected]:
            weight = model.get_parameter(name).detach().float()
            norms = weight.norm(dim=1)
            if isinstance(cb, MinMaxNorm):  # rate 1: inside the interval after every step
                assert cb.rule.min_value * (1 - 1e-5) <= float(norms.min()), name
                assert float(norms.max()) <= cb.rule.max_value * (1 + 1e-5), name
            elif isinstance(cb, UnitNorm):
                torch.testing.assert_close(norms, torch.ones_like(norms), rtol=1e-5, atol=1e-6)
            else:
                assert bool((weight >= 0).all()) and float((weight == 0).float().mean()) > 0, name


def check_activity(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, ActivityRegularization):
        summary = cb.run_summary()
        assert summary["batches"] > 0 and summary["modules"] == ["net.1"], summary
        assert math.isfinite(summary["final_activity"]) and summary["final_activity"] > 0, summary


def check_dropout(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, ScheduledDropout):
        summary = cb.run_summary()
        assert summary["injected"] == ["net.1.injected_dropout"], summary
        assert summary["final_rate"] == cb.schedule.at(summary["final_step"], summary["final_epoch"]), summary
        assert summary["module_rates"]["net.1.injected_dropout"] == summary["final_rate"], summary


def check_injected(name: str) -> Callable[[list[pl.Callback], pl.Trainer, nn.Module], None]:
    """A dropout or noise of one kind injected at ``name`` and scheduled there."""

    def check(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
        for cb in _ours(callbacks, ScheduledDropout):
            summary = cb.run_summary()
            assert summary["injected"] == [name] and summary["modules"] == [name], summary
            assert summary["final_rate"] == cb.schedule.at(summary["final_step"], summary["final_epoch"]), summary
            assert summary["module_rates"][name] == summary["final_rate"], summary

    return check


def _injecting(kind: str, **kw: Any) -> Callable[[], list[pl.Callback]]:
    schedule = {"name": "linear", "start": 0.0, "end": 0.3, "end_at": 24}
    return lambda: [ScheduledDropout(schedule, inject=["ReLU"], inject_kind=kind, verbose=False, **kw)]


def check_label_smoothing(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, LabelSmoothing):
        summary = cb.run_summary()
        assert summary["final_step"] is not None and summary["final_step"] < trainer.global_step, summary
        assert summary["final_smoothing"] == cb.schedule.at(summary["final_step"], summary["final_epoch"]), summary
        assert summary["num_classes"] == 4, summary


def check_jsd(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, AugMixJSD):
        summary = cb.run_summary()
        assert summary["final_jsd"] is not None and summary["final_jsd"] > 0, summary
        assert not model._forward_hooks, "the JSD hook outlived the fit"


def check_early_stopping(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in _ours(callbacks, EarlyStopping):
        summary = cb.run_summary()
        assert summary["checks"] >= 1 and summary["best_epoch"] is not None, summary
        if summary["stopped"]:
            assert summary["reason"] and summary["message"], summary
        if cb.restore_best_weights:
            assert summary["restored_epoch"] == summary["best_epoch"], summary
            assert cb.restorer is not None and cb.restorer.best_epoch == summary["best_epoch"], summary
    check_restore(callbacks, trainer, model)


def check_restore(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for cb in [c for c in trainer.callbacks if isinstance(c, RestoreBestWeights)]:
        assert cb.restored_epoch is not None and cb.restored_epoch == cb.best_epoch, cb.run_summary()
        for key, value in cb.best_weights.items():
            assert torch.equal(model.state_dict()[key].detach().cpu(), value), key


def check_all(callbacks: list[pl.Callback], trainer: pl.Trainer, model: nn.Module) -> None:
    for check in (check_penalty, check_max_norm, check_dropout, check_early_stopping):
        check(callbacks, trainer, model)


@dataclass(frozen=True)
class Entry:
    """One row of the reliability matrix.

    Attributes:
        name: row name.
        make: builds fresh instances of the callbacks under test.
        logged: metric names the callbacks write to the loggers.
        check: asserts after a fit that the callbacks did their job.
        random: the callbacks draw random numbers (dropout masks), so runs on different process layouts
            are compared by their logged rates, not their weights.
        feature_maps: the model's hidden ReLU works on ``(N, 2, 4, 4)`` maps (:class:`FeatureMapReLU`, same
            parameters), for the kinds that need feature maps.
        manual_error: the documented error for manual optimization with several optimizers (None: works).
    """

    name: str
    make: Callable[[], list[pl.Callback]]
    logged: tuple[str, ...]
    check: Callable[[list[pl.Callback], pl.Trainer, nn.Module], None]
    random: bool = False
    feature_maps: bool = False
    manual_error: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


REGISTRY: list[Entry] = [
    Entry(
        "l2_scheduled",
        lambda: [WeightPenalty(l2=1e-3, schedule={"name": "linear", "start": 0.0, "end": 1.0, "end_at": 20})],
        ("reg/l2", "reg/scale"),
        check_penalty,
    ),
    Entry(
        "elastic", lambda: [WeightPenalty(l1=1e-4, l2=1e-3)], ("reg/l1", "reg/l1_zero_frac", "reg/l2"), check_penalty
    ),
    Entry(
        "proximal_l1", lambda: [WeightPenalty(l1=2e-2, mode="proximal")], ("reg/l1", "reg/l1_zero_frac"), check_penalty
    ),
    Entry("decoupled", lambda: [WeightPenalty(l2=1e-2, mode="decoupled")], ("reg/l2",), check_penalty),
    Entry("max_norm", lambda: [MaxNorm(0.5)], ("reg/max_unit_norm",), check_max_norm),
    Entry(
        "min_max_norm",
        lambda: [MinMaxNorm(0.5, 1.0)],
        ("reg/max_unit_norm", "reg/min_unit_norm"),
        check_keras_constraints,
    ),
    Entry("unit_norm", lambda: [UnitNorm()], ("reg/max_unit_norm", "reg/min_unit_norm"), check_keras_constraints),
    Entry("non_neg", lambda: [NonNeg(include=["net.0.weight"])], ("reg/zero_frac",), check_keras_constraints),
    Entry(
        "orthogonal",
        lambda: [WeightPenalty(rule={"name": "orthogonal", "factor": 0.1, "mode": "columns"})],
        ("reg/orthogonal",),
        check_penalty,
    ),
    Entry(
        "activity_l2",
        lambda: [ActivityRegularization(l1=1e-3, l2=1e-2, modules=["ReLU"])],
        ("reg/activity",),
        check_activity,
    ),
    Entry("bias_l2", lambda: [WeightPenalty(l2=1e-3, bias={"l2": 1e-2})], ("reg/l2",), check_penalty),
    Entry(
        "dropout_step",
        lambda: [
            ScheduledDropout({"name": "linear", "start": 0.0, "end": 0.3, "end_at": 24}, inject=["ReLU"], verbose=False)
        ],
        ("reg/dropout_p",),
        check_dropout,
        random=True,
    ),
    Entry(
        "dropout_epoch",
        lambda: [
            ScheduledDropout({"name": "early", "p": 0.2, "cutoff": 2, "unit": "epoch"}, inject=["ReLU"], verbose=False)
        ],
        ("reg/dropout_p",),
        check_dropout,
        random=True,
    ),
    Entry(
        "gaussian_noise",
        _injecting("gaussian_noise"),
        ("reg/dropout_p",),
        check_injected("net.1.injected_gaussian_noise"),
        random=True,
    ),
    Entry(
        "gaussian_dropout",
        _injecting("gaussian_dropout"),
        ("reg/dropout_p",),
        check_injected("net.1.injected_gaussian_dropout"),
        random=True,
    ),
    Entry(
        "alpha_dropout",
        _injecting("alpha_dropout"),
        ("reg/dropout_p",),
        check_injected("net.1.injected_alpha_dropout"),
        random=True,
    ),
    Entry(
        "spatial_dropout",
        _injecting("spatial_dropout"),
        ("reg/dropout_p",),
        check_injected("net.1.act.injected_spatial_dropout"),
        random=True,
        feature_maps=True,
    ),
    Entry(
        "dropblock",
        _injecting("dropblock", inject_options={"block_size": 2}, depth_scale=True),
        ("reg/dropout_p",),
        check_injected("net.1.act.injected_dropblock"),
        random=True,
        feature_maps=True,
    ),
    Entry(
        "label_smoothing",
        lambda: [LabelSmoothing({"name": "linear", "start": 0.0, "end": 0.2, "end_at": 24}, num_classes=4)],
        ("reg/label_smoothing",),
        check_label_smoothing,
    ),
    Entry(
        # The two halves of each (shuffled) batch stand for a clean and an augmented split. Under DDP each rank pairs
        # the halves of its own rows, so layouts are compared by their logged values only (random=True).
        "augmix_jsd",
        lambda: [AugMixJSD(alpha=1.0, num_splits=2)],
        ("reg/jsd",),
        check_jsd,
        random=True,
    ),
    Entry(
        "early_stopping",
        lambda: [EarlyStopping("val/loss", patience=2, restore_best_weights=True)],
        ("es/wait", "es/gl"),
        check_early_stopping,
    ),
    Entry(
        "early_stopping_gl",
        lambda: [
            EarlyStopping("val/loss", criterion="GL", alpha=100.0, restore_best_weights=True, log_prefix="es_gl/")
        ],
        ("es_gl/wait", "es_gl/gl"),
        check_early_stopping,
    ),
    Entry(
        "restore_best_weights",  # alone: the best validation loss comes back however training ended
        lambda: [RestoreBestWeights("val/loss")],
        (),
        check_restore,
    ),
    Entry(
        "all_together",
        lambda: [
            WeightPenalty(l2=1e-3),
            MaxNorm(1.0),
            ScheduledDropout(0.1, inject=["ReLU"], verbose=False),
            EarlyStopping("val/acc", mode="max", patience=2, restore_best_weights=True),
        ],
        ("reg/l2", "reg/max_unit_norm", "reg/dropout_p", "es/wait"),
        check_all,
        random=True,
    ),
]
BY_NAME = {e.name: e for e in REGISTRY}


# --------------------------------------------------------------------------------------------- harness
def _blobs() -> TensorDataset:
    # Noisy blobs (train and validation from one distribution) so that the validation loss stalls.
    x, y = make_blobs(320, seed=0).tensors
    return TensorDataset(x + 2.0 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)), y)


def train_loader(batch_size: int = 32, shuffle: bool = True) -> DataLoader:
    return DataLoader(TensorDataset(*(t[:256] for t in _blobs().tensors)), batch_size=batch_size, shuffle=shuffle)


class RankInterleaved(Sampler):
    """Rank ``r`` of ``w`` takes samples ``r, r + w, r + 2w, ...`` in order: with batch ``b`` per rank, the ranks'
    ``i``-th batches together are exactly samples ``i*b*w ... (i+1)*b*w - 1``, the ``i``-th batch of one process
    with batch ``b*w``. (Lightning's own DistributedSampler always shuffles training data.)"""

    def __init__(self, n: int) -> None:
        self.n = n

    def _layout(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self):
        rank, world = self._layout()
        return iter(range(rank, self.n, world))

    def __len__(self) -> int:
        rank, world = self._layout()
        return len(range(rank, self.n, world))


def sharded_train_loader(batch_size: int) -> DataLoader:
    """Unshuffled training data, split across DDP ranks by :class:`RankInterleaved` (``use_distributed_sampler=False``)."""
    ds = TensorDataset(*(t[:256] for t in _blobs().tensors))
    return DataLoader(ds, batch_size=batch_size, sampler=RankInterleaved(len(ds)))


def val_loader() -> DataLoader:
    return DataLoader(TensorDataset(*(t[256:] for t in _blobs().tensors)), batch_size=64)


def last_checkpoint(dirpath: Path) -> AtomicModelCheckpoint:
    """The shipped ``callbacks/last_checkpoint`` configuration."""
    return AtomicModelCheckpoint(
        dirpath=dirpath,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )


@dataclass
class Run:
    trainer: pl.Trainer
    model: pl.LightningModule
    callbacks: list[pl.Callback]
    logger: MemoryLogger
    final_states: dict[str, Any] = field(default_factory=dict)

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def states(self) -> dict[str, Any]:
        """state_dict of each of our callbacks right after fit (RNGState's: the generators must end equal too)."""
        return self.final_states


def fit(
    entry: Entry | None,
    max_epochs: int,
    *,
    model: pl.LightningModule | None = None,
    ckpt_dir: Path | None = None,
    ckpt_path: str | Path | None = None,
    callbacks: list[pl.Callback] | None = None,
    seed: int = 0,
    train: DataLoader | None = None,
    val: DataLoader | None = None,
    **trainer_kw: Any,
) -> Run:
    """Seed, build the model and fit it through helpers.fit with the entry's callbacks + RNGState (+ last_checkpoint
    into ``ckpt_dir``), deterministically, logging every step to a MemoryLogger; keep what the checks compare."""
    pl.seed_everything(seed, workers=True)
    model = model if model is not None else MomentumModule(lr=0.1)
    if entry is not None and entry.feature_maps:
        model.net[1] = FeatureMapReLU()
    cbs = list(callbacks) if callbacks is not None else (entry.make() if entry else [])
    cbs.append(RNGState())
    if ckpt_dir is not None:
        cbs.append(last_checkpoint(ckpt_dir))
    logger = MemoryLogger()
    trainer = shared_fit(
        model,
        *cbs,
        max_epochs=max_epochs,
        data=(train if train is not None else train_loader(), val if val is not None else val_loader()),
        ckpt_path=ckpt_path,
        logger=logger,
        **{"log_every_n_steps": 1, "deterministic": True, **trainer_kw},
    )
    states = {cb.state_key: cb.state_dict() for cb in trainer.callbacks if isinstance(cb, OURS)}
    return Run(trainer, model, cbs, logger, states)


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive bit-for-bit equality of nested dicts/lists/tensors/floats (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (
            a.is_floating_point() and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
        ), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (
            f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        )
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------------------------ real architectures
# One entry per family (timm ViT, timm ConvNeXt, torchvision ResNet-18, Hugging Face BERT): a model builder, its
# data, and the callbacks it is tested with. Used by tests/real_models/test_real_models.py (resume, bf16-mixed, DDP).
# timm and transformers are optional: the builders import them, the tests importorskip them.
def synthetic_images(n: int, shape: tuple[int, int, int], classes: int = 10, seed: int = 0) -> TensorDataset:
    centers = torch.randn(classes, *shape, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + n)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(centers[y] + 0.5 * torch.randn(n, *shape, generator=g), y)


def synthetic_tokens(n: int, length: int = 12, vocab: int = 64, classes: int = 3, seed: int = 0) -> TensorDataset:
    """Token ids in 1..vocab-1 (0 is BERT's padding id); the label is which third of the vocabulary the first token is in."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, length), generator=g)
    return TensorDataset(ids, (ids[:, 0] * classes) // vocab)


def vit_tiny(**kw: Any) -> pl.LightningModule:
    from functools import partial

    from lightning_reg.models.zoo import ImageClassifier, timm_model

    net = partial(timm_model, "vit_tiny_patch16_224", img_size=32, patch_size=8, depth=4, drop_path_rate=0.1, **kw)
    return ImageClassifier(net, 10, (3, 32, 32), optimizer=partial(torch.optim.AdamW, lr=1e-3))


def convnext_small(**kw: Any) -> pl.LightningModule:
    from functools import partial

    from lightning_reg.models.zoo import ImageClassifier, timm_model

    net = partial(timm_model, "convnext_atto", depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), drop_path_rate=0.1, **kw)
    return ImageClassifier(net, 10, (3, 32, 32), optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))


def resnet18_small() -> pl.LightningModule:
    from functools import partial

    from lightning_reg.models.zoo import ImageClassifier, torchvision_model

    return ImageClassifier(
        partial(torchvision_model, "resnet18", small_input=True),
        10,
        (1, 8, 8),
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
    )


BERT_CONFIG = dict(
    vocab_size=64,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=16,
    num_labels=3,
)


def bert_tiny(**kw: Any) -> pl.LightningModule:
    from functools import partial

    from lightning_reg.models.zoo import SequenceClassifier, hf_sequence_classifier

    return SequenceClassifier(
        partial(hf_sequence_classifier, **{**BERT_CONFIG, **kw}),
        num_classes=3,
        optimizer=partial(torch.optim.AdamW, lr=1e-3),
    )


@dataclass(frozen=True)
class Family:
    """A real architecture with its data and the callbacks it is tested with (all its own kinds of modules)."""

    name: str
    requires: str | None
    build: Callable[[], pl.LightningModule]
    data: Callable[[int], TensorDataset]
    make: Callable[[], list[pl.Callback]]

    def loaders(self, batch_size: int = 8) -> tuple[DataLoader, DataLoader]:
        return (
            DataLoader(self.data(32), batch_size=batch_size, shuffle=True),
            DataLoader(self.data(16), batch_size=16),
        )


def _family_callbacks(dropout: dict[str, Any]) -> Callable[[], list[pl.Callback]]:
    return lambda: [
        WeightPenalty(l2=1e-3),
        MaxNorm(2.0),
        ScheduledDropout(verbose=False, **dropout),
        EarlyStopping("val/loss", patience=5, restore_best_weights=True),
    ]


def _stochastic_depth_callbacks() -> list[pl.Callback]:
    from lightning_reg import StochasticDepth

    return [
        WeightPenalty(l2=1e-3),
        MaxNorm(2.0),
        StochasticDepth({"name": "linear", "start": 0.0, "end": 0.2, "end_at": 8}, verbose=False),
        EarlyStopping("val/loss", patience=5, restore_best_weights=True),
    ]


_LINEAR = {"name": "linear", "start": 0.05, "end": 0.2, "end_at": 8}
FAMILIES: list[Family] = [
    Family(
        "timm_vit",
        "timm",
        vit_tiny,
        lambda n: synthetic_images(n, (3, 32, 32)),
        _family_callbacks({"schedule": _LINEAR, "modules": ["DropPath"], "depth_scale": True}),
    ),
    Family(
        "timm_convnext",
        "timm",
        convnext_small,
        lambda n: synthetic_images(n, (3, 32, 32)),
        _family_callbacks({"schedule": _LINEAR, "modules": ["DropPath"], "depth_scale": True}),
    ),
    Family("resnet18", None, resnet18_small, lambda n: synthetic_images(n, (1, 8, 8)), _stochastic_depth_callbacks),
    Family(
        "hf_bert", "transformers", bert_tiny, lambda n: synthetic_tokens(n), _family_callbacks({"schedule": _LINEAR})
    ),
]
FAMILY = {f.name: f for f in FAMILIES}
