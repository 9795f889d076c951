"""Real architectures through real Trainers: timm ViT and ConvNeXt, torchvision ResNet-18, Hugging Face BERT/ViT.

Every model is built from its config with random weights (no download) and trained a few steps on synthetic
data on the CPU. The families, their data and callbacks are in tests/reliability_registry.py (FAMILIES).
"""

from __future__ import annotations

import logging
import os

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_reg import EarlyStopping, MaxNorm, ScheduledDropout, StochasticDepth, WeightPenalty
from lightning_reg.core.penalties import select_parameters

from reliability_registry import (
    BERT_CONFIG,
    FAMILIES,
    FAMILY,
    assert_same,
    convnext_small,
    fit,
    resnet18_small,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _need(module: str | None) -> None:
    if module is not None:
        pytest.importorskip(module)


def _fit(
    family_name: str, callbacks: list[pl.Callback], epochs: int = 1, model: pl.LightningModule | None = None, **kw
):
    fam = FAMILY[family_name]
    _need(fam.requires)
    pl.seed_everything(0)
    model = model if model is not None else fam.build()
    train, val = fam.loaders()
    return fit(None, epochs, model=model, callbacks=callbacks, train=train, val=val, **kw)


def _names(cb: WeightPenalty | MaxNorm) -> set[str]:
    return {p.name for p in cb._selected}


# ------------------------------------------------------------------------------------- WeightPenalty selection
@pytest.mark.parametrize("name", ["timm_vit", "timm_convnext"])
def test_weight_penalty_default_selection_is_timms_own_decay_group(name: str) -> None:
    pytest.importorskip("timm")
    from timm.optim import param_groups_weight_decay

    cb = WeightPenalty(l2=1e-4, log_every_n_steps=0)
    run = _fit(name, [cb], limit_train_batches=2, limit_val_batches=1)
    net = run.model.net
    groups = param_groups_weight_decay(
        net, 0.05, no_weight_decay_list=net.no_weight_decay() if hasattr(net, "no_weight_decay") else ()
    )
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert {id(p.param) for p in cb._selected} == decayed
    selected = _names(cb)
    assert all(n.endswith(".weight") for n in selected)
    if name == "timm_vit":
        assert {"net.pos_embed", "net.cls_token"}.isdisjoint(selected)
        assert "net.blocks.3.attn.qkv.weight" in selected and "net.patch_embed.proj.weight" in selected
        assert not any(".norm" in n for n in selected)


def test_no_weight_decay_is_honoured_for_parameters_that_would_be_kernels() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def no_weight_decay(self):
            return {"table.*"}

    assert [n for n, _, _ in select_parameters(nn.Sequential(Net()))] == ["0.head.weight"]


def test_fit_start_summary_is_counts_per_module_type_for_a_large_model(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _fit("timm_convnext", [WeightPenalty(l2=1e-4, log_every_n_steps=0)], limit_train_batches=1, limit_val_batches=1)
    line = next(r.getMessage() for r in caplog.records if "penalizing" in r.getMessage())
    n_tensors = len(list(convnext_small().parameters()))
    assert n_tensors >= 50
    assert "Conv2d 16 (" in line and "Linear 1 (" in line and "LayerNorm2d" in line, line
    assert "net.stages" not in line and len(line) < 600, line  # counts, not a wall of names


def test_bert_embeddings_are_an_explicit_option() -> None:
    pytest.importorskip("transformers")
    on, off = WeightPenalty(l2=1e-4, log_every_n_steps=0), WeightPenalty(l2=1e-4, embeddings=False, log_every_n_steps=0)
    _fit("hf_bert", [on, off], limit_train_batches=1, limit_val_batches=1)
    embeddings = {f"net.bert.embeddings.{k}_embeddings.weight" for k in ("word", "position", "token_type")}
    assert embeddings <= _names(on)
    assert embeddings.isdisjoint(_names(off))
    assert _names(on) - _names(off) == embeddings
    assert not any("LayerNorm" in n or n.endswith(".bias") for n in _names(on))
    assert on.state_key != off.state_key


def test_tied_lm_head_is_penalized_once() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = {k: v for k, v in BERT_CONFIG.items() if k != "num_labels"}
    lm = transformers.BertForMaskedLM(transformers.BertConfig(**cfg))
    assert lm.cls.predictions.decoder.weight is lm.bert.embeddings.word_embeddings.weight

    class ZeroLoss(pl.LightningModule):
        """Loss 0·output: the only gradient is the penalty's, so one SGD step gives w·(1 − 2·lr·l2) exactly."""

        def __init__(self) -> None:
            super().__init__()
            self.net = lm

        def training_step(self, batch, batch_idx):
            return 0.0 * self.net(input_ids=batch[0]).logits.sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    model = ZeroLoss()
    tied = model.net.bert.embeddings.word_embeddings.weight
    before = tied.detach().clone()
    cb = WeightPenalty(l2=0.1, log_every_n_steps=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
    )
    ids = torch.randint(1, 64, (4, 8))
    trainer.fit(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids), batch_size=4))
    assert "net.cls.predictions.decoder.weight" not in _names(cb)
    torch.testing.assert_close(tied.detach(), before * (1 - 2 * 0.5 * 0.1), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------- ScheduledDropout
def test_timm_vit_drop_path_rates_are_depth_scaled_in_block_order() -> None:
    cb = ScheduledDropout(0.2, modules=["DropPath"], depth_scale=True, verbose=False)
    _fit("timm_vit", [cb], limit_train_batches=1, limit_val_batches=1)
    # timm spreads drop_path_rate linearly from 0: block 0 gets none (an Identity), blocks 1-3 get DropPath
    expected = [f"net.blocks.{b}.drop_path{i}" for b in range(1, 4) for i in (1, 2)]
    assert cb.target_names == expected
    rates = cb.run_summary()["module_rates"]
    for name in expected:  # both drop-paths of block b get 0.2 * b / 3, as timm's linspace(0, 0.2, 4) gives them
        block = int(name.split(".")[2])
        assert rates[name] == pytest.approx(0.2 * block / 3)


def test_every_bert_dropout_follows_the_schedule_including_attention() -> None:
    pytest.importorskip("transformers")
    cb = ScheduledDropout({"name": "linear", "start": 0.0, "end": 0.3, "end_at": 2}, verbose=False)
    run = _fit("hf_bert", [cb], limit_train_batches=3, limit_val_batches=1)
    dropouts = [n for n, m in run.model.named_modules() if isinstance(m, nn.Dropout)]
    assert set(cb.target_names) == set(dropouts) and len(dropouts) == 8
    # BERT's attention reads `self.dropout.p` at forward time: the scheduled module
    assert "net.bert.encoder.layer.0.attention.self.dropout" in cb.target_names
    assert all(run.model.get_submodule(n).p == pytest.approx(0.3) for n in dropouts)


def _hf_vit(p: float = 0.1):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
        attention_probs_dropout_prob=p,
        hidden_dropout_prob=p,
    )
    from lightning_reg.models.zoo import ImageClassifier

    return ImageClassifier(transformers.ViTForImageClassification(cfg), 10, (3, 16, 16))


class _Logits(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.inner = net

    def forward(self, x):
        return self.inner(pixel_values=x).logits


def test_hf_vit_float_attention_dropout_is_scheduled() -> None:
    model = _hf_vit()
    model.net = _Logits(model.net)
    cb = ScheduledDropout(0.25, verbose=False)
    from reliability_registry import synthetic_images

    data = torch.utils.data.DataLoader(synthetic_images(8, (3, 16, 16)), batch_size=4)
    fit(None, 1, model=model, callbacks=[cb], train=data, val=data, limit_train_batches=1)
    floats = [f"net.inner.vit.layers.{i}.attention.attention_dropout" for i in range(2)]
    assert set(floats) <= set(cb.target_names)
    for i in range(2):
        assert model.net.inner.vit.layers[i].attention.attention_dropout == 0.25


def test_unscheduled_attention_dropout_is_named_in_a_warning() -> None:
    model = _hf_vit()
    model.net = _Logits(model.net)
    from reliability_registry import synthetic_images

    data = torch.utils.data.DataLoader(synthetic_images(8, (3, 16, 16)), batch_size=4)
    with pytest.warns(
        UserWarning, match=r"not scheduled: net\.inner\.vit\.layers\.0\.attention\.attention_dropout=0\.1"
    ):
        fit(
            None,
            1,
            model=model,
            callbacks=[ScheduledDropout(0.25, modules=["Dropout"], verbose=False)],
            train=data,
            val=data,
            limit_train_batches=1,
        )


def test_config_dropout_read_at_forward_time_is_named_in_a_warning() -> None:
    class ReadsConfig(nn.Module):
        """Reads its rate from the config at forward time, as a few Hugging Face models do."""

        def __init__(self) -> None:
            super().__init__()
            self.config = type("Cfg", (), {"to_dict": lambda self: {"attention_dropout": 0.2}})()
            self.proj = nn.Linear(4, 4)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            return self.drop(nn.functional.dropout(self.proj(x), self.config.to_dict()["attention_dropout"]))

    from lightning_reg.core.dropout import find_dropout_modules, unscheduled_rates

    net = nn.Sequential(ReadsConfig())
    assert unscheduled_rates(net, find_dropout_modules(net)) == ["0.config.attention_dropout=0.2"]


# ---------------------------------------------------------------------------------------------------- MaxNorm
def test_max_norm_on_conv_kernels_per_output_channel_and_linear_rows() -> None:
    cb = MaxNorm(0.3, log_every_n_steps=0)
    run = _fit("timm_convnext", [cb], limit_train_batches=2, limit_val_batches=1)
    convs = [m for m in run.model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in run.model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 16 and len(linears) >= 1
    for m in convs + linears:
        norms = m.weight.detach().flatten(1).norm(dim=1)
        assert norms.max() <= 0.3 * (1 + 1e-5)
    assert {id(m.weight) for m in convs + linears} <= {id(p.param) for p in cb._selected}


# ------------------------------------------------------------------------------ EarlyStopping restores buffers
class _FinalState(pl.Callback):
    """Keeps the state at on_train_end, before EarlyStopping (placed after it) restores the best weights."""

    def on_train_end(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_early_stopping_restores_batchnorm_running_stats_and_all_buffers() -> None:
    # On this data the validation loss rises after the first epoch: the restore has to undo 2 epochs
    es = EarlyStopping("val/loss", mode="min", patience=5, restore_best_weights=True)
    final = _FinalState()
    run = _fit("resnet18", [final, es], epochs=3)
    assert es.best_epoch < run.trainer.current_epoch - 1
    buffers = {n for n, _ in run.model.named_buffers()}
    assert "net.bn1.running_mean" in buffers and "net.layer4.1.bn2.num_batches_tracked" in buffers
    state = run.model.state_dict()
    for key in buffers:
        assert torch.equal(state[key], es.restorer.best_weights[key]), key
    assert not torch.equal(final.state["net.bn1.running_mean"], state["net.bn1.running_mean"])
    assert int(final.state["net.bn1.num_batches_tracked"]) > int(state["net.bn1.num_batches_tracked"])


# --------------------------------------------------------------------------------------------- StochasticDepth
def test_stochastic_depth_on_resnet18_keeps_names_and_optimizer_and_depth_scales() -> None:
    cb = StochasticDepth(0.2, verbose=False)
    reference = resnet18_small()
    run = _fit("resnet18", [cb], limit_train_batches=2, limit_val_batches=1)
    assert list(run.model.state_dict()) == list(reference.state_dict())
    assert [n for n, _ in run.model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    opt_params = [p for g in run.trainer.optimizers[0].param_groups for p in g["params"]]
    assert [id(p) for p in opt_params] == [id(p) for p in run.model.parameters()]
    expected = [f"net.layer{s}.{b}.bn2.stochastic_depth" for s in range(1, 5) for b in range(2)]
    assert cb.wrapped == expected
    rates = cb.run_summary()["module_rates"]
    assert [rates[n] for n in expected] == pytest.approx([0.2 * (i + 1) / 8 for i in range(8)])


def test_stochastic_depth_with_a_block_class_as_key_says_what_it_wrapped(caplog: pytest.LogCaptureFixture) -> None:
    from torchvision.models.resnet import BasicBlock

    cb = StochasticDepth(0.2, blocks={BasicBlock: "bn2"}, names=["net.layer4.*"], verbose=True)
    # Lightning's package logger may not propagate to the root logger in a full session: listen on it directly.
    package_logger = logging.getLogger("lightning.pytorch")
    package_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            _fit("resnet18", [cb], limit_train_batches=1, limit_val_batches=1)
    finally:
        package_logger.removeHandler(caplog.handler)
    assert cb.wrapped == ["net.layer4.0.bn2.stochastic_depth", "net.layer4.1.bn2.stochastic_depth"]
    assert "wrapped the residual branch of 2 block(s) (BasicBlock)" in caplog.text  # the class's name, no TypeError


def test_residual_drop_drops_whole_samples_of_the_branch_in_training_and_is_identity_in_eval() -> None:
    from torchvision.models.resnet import BasicBlock

    from lightning_reg.core.drop_path import inject_stochastic_depth

    torch.manual_seed(0)
    block = BasicBlock(4, 4)
    plain = BasicBlock(4, 4)
    plain.load_state_dict(block.state_dict())
    inject_stochastic_depth(nn.Sequential(block), 0.5)
    x = torch.randn(64, 4, 6, 6)
    block.eval(), plain.eval()
    assert torch.equal(block(x), plain(x))
    block.train()
    out = block(x)
    dropped = torch.tensor([torch.equal(out[i], torch.relu(x[i])) for i in range(64)])
    assert 10 < int(dropped.sum()) < 54  # about half of the samples lose their branch
    # the kept samples' branch is scaled by 1/(1-p)=2: branch = (out - x) before the final ReLU where out > 0
    block.get_submodule("bn2.stochastic_depth").drop_prob = 0.0
    torch.manual_seed(1)
    full = block(x)  # no drop; BN in train mode sees the same batch
    kept = ~dropped
    plain.train()
    pre_kept = torch.relu(2 * plain.bn2(plain.conv2(plain.relu(plain.bn1(plain.conv1(x))))) + x)
    torch.testing.assert_close(out[kept], pre_kept[kept], rtol=1e-5, atol=1e-5)
    assert not torch.equal(full[kept], out[kept])


def test_stochastic_depth_user_block_protocol_and_clear_errors() -> None:
    from lightning_reg.core.drop_path import inject_stochastic_depth
    from lightning_reg.errors import ConfigError

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branch = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))

        def forward(self, x):
            return x + self.branch(x)

    net = nn.Sequential(Block(), Block())
    assert inject_stochastic_depth(net, 0.1, blocks={"Block": "branch.2"}) == [
        "0.branch.2.stochastic_depth",
        "1.branch.2.stochastic_depth",
    ]
    with pytest.raises(ConfigError, match="'nope'.*its children are: branch"):
        inject_stochastic_depth(nn.Sequential(Block()), 0.1, blocks={"Block": "nope"})
    with pytest.raises(ConfigError, match="no residual block.*Module types in the model: Linear"):
        inject_stochastic_depth(nn.Sequential(nn.Linear(2, 2)), 0.1)
    with pytest.raises(ConfigError, match="`p` must be"):
        inject_stochastic_depth(net, 1.0)


# ------------------------------------------------------------------------- resume, bf16-mixed for each family
def _family(name: str):
    fam = FAMILY[name]
    _need(fam.requires)
    train, val = fam.loaders()
    return fam, train, val


def _seeded(fam):
    pl.seed_everything(0)
    return fam.build()


# resnet18 carries StochasticDepth: the oldest-Lightning smoke subset resumes it.
@pytest.mark.parametrize(
    "name",
    [pytest.param(f.name, marks=[pytest.mark.oldest_lightning] if f.name == "resnet18" else []) for f in FAMILIES],
)
def test_family_resume_is_bit_identical(name: str, tmp_path) -> None:
    fam, train, val = _family(name)
    full = fit(None, 3, model=_seeded(fam), callbacks=fam.make(), train=train, val=val)
    fit(None, 1, model=_seeded(fam), callbacks=fam.make(), train=train, val=val, ckpt_dir=tmp_path)
    resumed = fit(
        None, 3, model=_seeded(fam), callbacks=fam.make(), train=train, val=val, ckpt_path=tmp_path / "last.ckpt"
    )
    assert full.trainer.global_step == resumed.trainer.global_step == 12
    assert_same(full.weights(), resumed.weights(), "weights")
    assert_same(full.states(), resumed.states(), "callback states")


@pytest.mark.parametrize("name", [f.name for f in FAMILIES])
def test_family_bf16_mixed(name: str) -> None:
    fam, train, val = _family(name)
    run = fit(None, 1, model=_seeded(fam), callbacks=fam.make(), train=train, val=val, precision="bf16-mixed")
    assert run.trainer.global_step == 4
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    assert all(torch.isfinite(v).all() for v in run.weights().values())
    penalty = next(cb for cb in run.callbacks if isinstance(cb, WeightPenalty))
    assert penalty.run_summary()["optimizer_steps"] == 4


def test_bert_runs_through_the_entry_point_with_penalty_and_scheduled_dropout(compose_cfg) -> None:
    pytest.importorskip("transformers")
    from lightning_reg.app.train import train

    cfg = compose_cfg(
        "data=synthetic_tokens",
        "model=hf_bert_tiny",
        "optimizer=adamw",
        "trainer=debug",
        "callbacks=[default,l2,dropout_linear]",
        "test=true",
    )
    summary = train(cfg)
    assert summary["status"] == "completed" and "test/acc" in summary["test"]
    by = {key.split("{")[0]: value for key, value in summary["callbacks"].items()}
    assert by["WeightPenalty"]["penalized_tensors"] == 17  # 14 Linear kernels + 3 embeddings
    assert by["ScheduledDropout"]["n_modules"] == 8 and by["ScheduledDropout"]["final_rate"] == pytest.approx(0.15)
