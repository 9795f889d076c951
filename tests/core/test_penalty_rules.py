"""The rule objects of core/penalty_rules.py and core/keras_rules.py, on plain tensors and modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_reg.core.keras_rules import MinMaxNorm, Orthogonal, UnitNorm, keras_layout
from lightning_reg.core.penalties import PenaltySpec
from lightning_reg.core.penalty_rules import RULES, Bucket, Coupled, Decoupled, MaxNorm, Proximal, make_rule
from lightning_reg.errors import ConfigError


def test_rules_are_registered_by_name_and_equal_by_arguments() -> None:
    assert {
        "gradient",
        "proximal",
        "decoupled",
        "max_norm",
        "min_max_norm",
        "unit_norm",
        "non_neg",
        "orthogonal",
    } <= set(RULES)
    assert Coupled(l2=1e-4) == Coupled(l2=1e-4) and hash(Coupled(l2=1e-4)) == hash(Coupled(l2=1e-4))
    assert Coupled(l2=1e-4) != Decoupled(l2=1e-4) and Coupled(l2=1e-4) != Coupled(l2=1e-3)
    assert make_rule({"name": "min_max_norm", "max_value": 2.0, "axis": [1]}) == MinMaxNorm(max_value=2.0, axis=(1,))


def test_groups_replace_the_rules_arguments_and_are_checked_again() -> None:
    spec = PenaltySpec(rule=MaxNorm(max_norm=3.0), groups={"1.*": {"max_norm": 1.0}})
    rules = [p.rule for p in spec.resolve(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))]
    assert rules == [MaxNorm(max_norm=3.0), MaxNorm(max_norm=1.0)]
    with pytest.raises(ConfigError, match=r"`groups\['1.\*'\].max_norm` must be in \(0.0, inf\]; got 0"):
        PenaltySpec(rule=MaxNorm(max_norm=3.0), groups={"1.*": {"max_norm": 0}})


def test_proximal_needs_l1_somewhere_a_group_is_enough() -> None:
    with pytest.raises(ConfigError, match="`mode='proximal'` soft-thresholds the L1 term"):
        PenaltySpec(l2=1e-4, rule=Proximal)
    spec = PenaltySpec(l2=1e-4, rule=Proximal, groups={"0.*": {"l1": 1e-3}})
    assert spec.any_l1 and spec.rule.needs_grad(spec.variants)


def test_bias_selects_the_biases_of_the_selected_kernels_only() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    spec = PenaltySpec(l2=1e-4, exclude=["2.*"], bias={"l2": 1e-2})
    chosen = {p.name: p.rule for p in spec.resolve(model)}
    assert chosen == {"0.weight": Coupled(l2=1e-4), "0.bias": Coupled(l2=1e-2)}


def test_the_constraints_act_per_output_unit_conv_transpose_included() -> None:
    w = torch.randn(3, 5, 2, 2) * 4  # ConvTranspose2d: (in, out, kh, kw), units along dim 1
    rule = UnitNorm()
    rule.after_step_(Bucket({}, rule, params=[w], dims=[1]), 1.0)
    norms = w.transpose(0, 1).reshape(5, -1).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones(5), rtol=1e-5, atol=1e-6)
    assert keras_layout(w, 1).shape == (12, 5)


def test_orthogonal_is_zero_on_orthogonal_units_and_factor_on_parallel_ones() -> None:
    rule = Orthogonal(factor=1.0, mode="columns")
    assert float(rule.value([torch.eye(4)], 1.0)) == 0.0
    assert float(rule.value([torch.ones(4, 4)], 1.0)) == pytest.approx(1.0)  # every pair: cosine 1
