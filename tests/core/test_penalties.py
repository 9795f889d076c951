"""Pure penalty math: selection rules, coefficients, and the in-place updates against their formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_reg.core.penalties import (
    PenaltySpec,
    Selectors,
    add_penalty_grad_,
    count_zeros,
    decoupled_step_,
    l1_norm,
    max_norm_,
    penalty_value,
    select_parameters,
    soft_threshold_,
    sq_l2_norm,
    unit_dim,
)
from lightning_reg.core.schedules import Linear
from lightning_reg.errors import ConfigError


class Zoo(nn.Module):
    """One of each layer kind the default rule must handle."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.deconv = nn.ConvTranspose2d(3, 2, 3)
        self.attn = nn.MultiheadAttention(4, 2)
        self.ln = nn.LayerNorm(4)
        self.rnn = nn.GRU(4, 4)
        self.head = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.ones(4))  # a free 1-D parameter
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def names(selection):
    return [n for n, _, _ in selection]


def test_default_selects_kernels_and_leaves_out_biases_norms_and_1d():
    assert names(select_parameters(Zoo())) == [
        "emb.weight",
        "conv.weight",
        "deconv.weight",
        "attn.in_proj_weight",
        "attn.out_proj.weight",
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "head.weight",
    ]


def test_include_types_take_kernels_globs_take_exactly_what_they_match():
    m = Zoo()
    assert names(select_parameters(m, include=["Linear"])) == ["attn.out_proj.weight", "head.weight"]
    assert names(select_parameters(m, include=["nn.Conv2d", "head.*"])) == ["conv.weight", "head.weight", "head.bias"]
    assert names(select_parameters(m, include=["torch.nn.Embedding", "*.bias"]))[:2] == ["emb.weight", "conv.bias"]
    assert names(select_parameters(m, include=[nn.ConvTranspose2d])) == ["deconv.weight"]
    # A dotted path to any nn.Module subclass works (here one defined in this test module).
    assert names(select_parameters(m, include=[f"{__name__}.Zoo"])) == []  # Zoo owns only the 1-D `scale`
    assert names(select_parameters(m, include=["scale"])) == ["scale"]


def test_exclude_types_remove_all_their_params_globs_remove_matches():
    m = Zoo()
    got = names(select_parameters(m, exclude=["MultiheadAttention", "rnn.*", "Embedding"]))
    # The attention's out_proj is a Linear owned by a child module, so excluding the parent type keeps it.
    assert got == ["conv.weight", "deconv.weight", "attn.out_proj.weight", "head.weight"]
    assert names(select_parameters(m, include=["*weight*"], exclude=["LayerNorm", "BatchNorm2d"]))[:3] == [
        "emb.weight",
        "conv.weight",
        "deconv.weight",
    ]


def test_tied_and_frozen_parameters_are_listed_once_or_not_at_all():
    m = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    m[1].weight = m[0].weight
    assert names(select_parameters(m)) == ["0.weight"]
    m.requires_grad_(False)
    assert select_parameters(m) == []


@pytest.mark.parametrize("bad", [[3], [None], [""], 3.5])
def test_bad_selector_entries_are_config_errors(bad):
    with pytest.raises(ConfigError, match="include"):
        Selectors.parse("include", bad)


def test_unit_dim_is_output_dimension():
    assert unit_dim(nn.Linear(2, 3)) == 0
    assert unit_dim(nn.Conv2d(1, 2, 3)) == 0
    assert unit_dim(nn.ConvTranspose2d(1, 2, 3)) == 1


def test_spec_groups_first_match_wins_and_others_keep_base():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    spec = PenaltySpec(l1=1e-5, l2=1e-4, groups={"2.*": {"l2": 1e-2}, "Linear": {"l1": 0.0}})
    got = [(p.name, p.l1, p.l2) for p in spec.resolve(m)]
    assert got == [("0.weight", 0.0, 1e-4), ("1.weight", 0.0, 1e-4), ("2.weight", 1e-5, 1e-2)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"l1": -0.1}, "`l1` must be in"),
        ({"l2": float("nan")}, "`l2` must be in"),
        ({"l2": "1e-4"}, "`l2` must be a number"),
        ({"groups": {"head.*": {"l3": 1.0}}}, "groups\\['head.\\*'\\]"),
        ({"groups": {"head.*": {"l2": -1.0}}}, "must be in"),
        ({"groups": ["head.*"]}, "`groups` must map"),
        ({"schedule": "warmup"}, "`schedule`"),
    ],
)
def test_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PenaltySpec(**kwargs)


def test_group_matching_nothing_and_empty_selection_are_errors_listing_the_model():
    m = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with pytest.raises(ConfigError, match=r"`groups` key\(s\) \['head.\*'\] match no selected parameter.*0.weight"):
        PenaltySpec(l2=1.0, groups={"head.*": {"l2": 1.0}}).resolve(m)
    with pytest.raises(ConfigError, match=r"matches no parameter.*0.weight \(Linear, \(4, 4\)\).*1.bias \(LayerNorm"):
        PenaltySpec(l2=1.0, include=["Conv2d"]).resolve(m)


def test_schedule_is_a_multiplier_and_negative_values_are_refused():
    spec = PenaltySpec(l2=1.0, schedule=Linear(0.0, 1.0, begin=0, end_at=10))
    assert [spec.scale_at(s, 0) for s in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert PenaltySpec(l2=1.0).scale_at(123, 4) == 1.0
    assert PenaltySpec(l2=1.0, schedule={"name": "milestones", "values": {0: 0.0, 3: 2.0}}).scale_at(3, 0) == 2.0
    with pytest.raises(ConfigError, match="values >= 0"):
        PenaltySpec(l2=1.0, schedule=lambda t: -1.0).scale_at(0, 0)


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g), torch.randn(2, 3, 2, 2, generator=g)]


def test_add_penalty_grad_equals_autograd_of_penalty_value():
    ws = [w.requires_grad_() for w in _tensors()]
    penalty_value(ws, ws, l1=0.3, l2=0.7).backward()
    grads = [torch.zeros_like(w) for w in ws]
    add_penalty_grad_([w.detach() for w in ws], grads, l1=0.3, l2=0.7)
    for g, w in zip(grads, ws):
        torch.testing.assert_close(g, w.grad, rtol=0, atol=1e-6)


def test_norms_and_zero_count():
    ws = _tensors()
    ws[0][0] = 0.0
    assert float(l1_norm(ws)) == pytest.approx(sum(float(w.abs().sum()) for w in ws), rel=1e-6)
    assert float(sq_l2_norm(ws)) == pytest.approx(sum(float(w.pow(2).sum()) for w in ws), rel=1e-6)
    assert count_zeros(ws) == 3
    assert float(penalty_value(ws, [], 0.0, 0.0)) == 0.0


def test_soft_threshold_matches_formula_and_gives_exact_zeros():
    ws = _tensors(1)
    expected = [w.sign() * (w.abs() - 0.5).clamp_min(0) for w in ws]
    soft_threshold_(ws, 0.5)
    for w, e in zip(ws, expected):
        torch.testing.assert_close(w, e, rtol=0, atol=0)
    assert count_zeros(ws) == sum(int((e == 0).sum()) for e in expected) > 0


def test_decoupled_step_is_a_penalty_gradient_step():
    ws = _tensors(2)
    expected = [w - 0.1 * (0.2 * w.sign() + 2 * 0.3 * w) for w in ws]
    decoupled_step_(ws, lr=0.1, l1=0.2, l2=0.3)
    for w, e in zip(ws, expected):
        torch.testing.assert_close(w, e, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dim", [0, 1])
def test_max_norm_clips_only_units_outside_the_ball(dim):
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(3))
    other = tuple(d for d in range(4) if d != dim)
    before = torch.linalg.vector_norm(w, dim=other)
    radius = float(before.median())
    inside = before <= radius
    kept = w.clone()
    max_norm_(w, radius, dim)
    after = torch.linalg.vector_norm(w, dim=other)
    assert bool((after <= radius + 1e-6).all())
    idx = [slice(None)] * 4
    idx[dim] = inside
    torch.testing.assert_close(w[tuple(idx)], kept[tuple(idx)], rtol=0, atol=0)  # untouched, bit for bit
    torch.testing.assert_close(after[~inside], torch.full_like(after[~inside], radius), rtol=1e-5, atol=0)
