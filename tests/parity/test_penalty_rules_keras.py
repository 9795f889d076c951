"""Parity with Keras 3 (``KERAS_BACKEND=torch``) of the constraints and regularizers, on identical weights:
``MaxNorm``, ``MinMaxNorm``, ``UnitNorm``, ``NonNeg`` (the constrained weights), ``OrthogonalRegularizer`` (the
value added and its gradient) and ``bias_regularizer``/``kernel_regularizer`` on a Dense layer (the value and
gradient :class:`~lightning_reg.WeightPenalty` adds).

A torch Linear weight ``(out, in)`` is Keras' Dense kernel ``(in, out)`` transposed; a Conv2d weight
``(out, in, kh, kw)`` is Keras' Conv2D kernel ``(kh, kw, in, out)`` permuted.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ["KERAS_BACKEND"] = "torch"  # read when keras is first imported; these tests are defined on it
keras = pytest.importorskip(
    "keras", minversion="3.15", reason='keras>=3.15 is not installed (pip install -e ".[parity]")'
)
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()!r} backend, not torch", allow_module_level=True)

from lightning_reg.core import keras_rules, penalty_rules  # noqa: E402
from lightning_reg.core.penalties import PenaltySpec  # noqa: E402
from lightning_reg.core.penalty_rules import Bucket  # noqa: E402

TOL = dict(rtol=1e-6, atol=1e-7)


def to_keras(w: torch.Tensor) -> torch.Tensor:
    return w.T.contiguous() if w.ndim == 2 else w.permute(2, 3, 1, 0).contiguous()


def weights(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return 2.0 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def ours(rule: penalty_rules.PenaltyRule, w: torch.Tensor) -> torch.Tensor:
    out = w.clone()
    with torch.no_grad():
        rule.after_step_(Bucket({}, rule, params=[out], dims=[0]), 1.0)
    return out


CONSTRAINTS = [
    (penalty_rules.MaxNorm(max_norm=2.0), lambda: keras.constraints.MaxNorm(2.0)),
    (keras_rules.MinMaxNorm(min_value=4.0, max_value=6.0), lambda: keras.constraints.MinMaxNorm(4.0, 6.0)),
    (
        keras_rules.MinMaxNorm(min_value=4.0, max_value=6.0, rate=0.3),
        lambda: keras.constraints.MinMaxNorm(4.0, 6.0, rate=0.3),
    ),
    (keras_rules.UnitNorm(), lambda: keras.constraints.UnitNorm()),
    (keras_rules.NonNeg(), lambda: keras.constraints.NonNeg()),
]


@pytest.mark.parametrize("shape, axis", [((5, 7), 0), ((4, 3, 3, 3), [0, 1, 2])], ids=["dense", "conv2d"])
@pytest.mark.parametrize("rule, make", CONSTRAINTS, ids=lambda r: repr(r) if not callable(r) else "")
def test_constraint_gives_keras_weights(rule, make, shape: tuple[int, ...], axis) -> None:
    w = weights(shape)
    constraint = make()
    if hasattr(constraint, "axis"):
        constraint.axis = axis
    expected = constraint(to_keras(w))
    got = to_keras(ours(rule, w))
    torch.testing.assert_close(got, torch.as_tensor(expected), **TOL)
    assert not torch.equal(got, to_keras(w)), "the weights were drawn so that the constraint changes them"


@pytest.mark.parametrize("mode", ["rows", "columns"])
@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (4, 3, 3, 3)], ids=["wide", "tall", "conv2d"])
def test_orthogonal_value_and_gradient_match_keras(mode: str, shape: tuple[int, ...]) -> None:
    w = weights(shape)
    kernel = to_keras(w).reshape(-1, shape[0])  # Keras' regularizer takes rank-2 kernels: (fan_in, units)
    leaf = kernel.clone().requires_grad_()
    expected = keras.regularizers.OrthogonalRegularizer(factor=0.3, mode=mode)(leaf)
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    rule = keras_rules.Orthogonal(factor=0.3, mode=mode)
    param = w.clone()
    torch.testing.assert_close(rule.value([param], 1.0, [0]), torch.as_tensor(expected).detach(), **TOL)
    param.grad = torch.zeros_like(param)
    with torch.no_grad():
        rule.grad_(Bucket({}, rule, params=[param], dims=[0]), 1.0)
    grad_keras_layout = to_keras(param.grad).reshape(-1, shape[0])
    torch.testing.assert_close(grad_keras_layout, expected_grad, **TOL)


@pytest.mark.parametrize("kernel, bias", [((1e-3, 1e-2), (0.0, 5e-2)), ((0.0, 1e-2), (2e-2, 0.0))])
def test_kernel_and_bias_regularizers_match_a_keras_dense_layer(kernel, bias) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(7, 5)
    with torch.no_grad():
        linear.bias.normal_()
    layer = keras.layers.Dense(
        5,
        kernel_regularizer=keras.regularizers.L1L2(*kernel),
        bias_regularizer=keras.regularizers.L1L2(*bias),
    )
    layer.build((None, 7))
    layer.set_weights([linear.weight.detach().T.numpy(), linear.bias.detach().numpy()])
    layer(torch.zeros(1, 7))
    keras_value = sum(layer.losses)
    keras_grads = torch.autograd.grad(keras_value, [layer.kernel.value, layer.bias.value])

    spec = PenaltySpec(l1=kernel[0], l2=kernel[1], bias={"l1": bias[0], "l2": bias[1]})
    selected = spec.resolve(linear)
    assert [p.name for p in selected] == ["weight", "bias"]
    value = sum(p.rule.value([p.param], 1.0) for p in selected)
    torch.testing.assert_close(value.detach(), torch.as_tensor(keras_value).detach().float(), **TOL)
    for p in selected:
        p.param.grad = torch.zeros_like(p.param)
        with torch.no_grad():
            p.rule.grad_(Bucket({}, p.rule, params=[p.param], dims=[0]), 1.0)
    torch.testing.assert_close(linear.weight.grad.T, keras_grads[0], **TOL)
    torch.testing.assert_close(linear.bias.grad, keras_grads[1], **TOL)


@pytest.mark.parametrize("l1, l2", [(1e-2, 0.0), (0.0, 3e-2), (1e-2, 3e-2)])
def test_activity_regularization_matches_a_keras_dense_layer(l1: float, l2: float) -> None:
    from lightning_reg import ActivityRegularization

    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    layer = keras.layers.Dense(4, activation="relu", activity_regularizer=keras.regularizers.L1L2(l1, l2))
    layer.build((None, 6))
    layer.set_weights([linear.weight.detach().T.numpy(), linear.bias.detach().numpy()])
    layer(x)
    keras_value = sum(layer.losses)
    keras_grads = torch.autograd.grad(keras_value, [layer.kernel.value, layer.bias.value])

    # Ours: the callback's hook on the ReLU after the Linear; the loss itself is zero, so the gradient is the penalty's.
    model = nn.Sequential(linear, nn.ReLU())
    cb = ActivityRegularization(l1=l1, l2=l2, modules=["ReLU"])
    handle = model[1].register_forward_hook(cb._forward_hook)
    (model(x) * 0.0).sum().backward()
    handle.remove()
    torch.testing.assert_close(cb._value, torch.as_tensor(keras_value).detach().float(), **TOL)
    torch.testing.assert_close(linear.weight.grad.T, keras_grads[0], **TOL)
    torch.testing.assert_close(linear.bias.grad, keras_grads[1], **TOL)
