"""Parity with Keras 3 (``KERAS_BACKEND=torch``) on identical inputs: the composed affine transform and its fill
modes (device and cpu path), the ZCA matrix (both formulas), Keras' initialisation and Keras' Adam step.

Keras is test-only (``pip install -e ".[parity]"``); without it every test here skips with that reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ["KERAS_BACKEND"] = "torch"  # read when keras is first imported; these tests are defined on it
keras = pytest.importorskip(
    "keras", minversion="3.15", reason='keras>=3.15 is not installed (pip install -e ".[parity]")'
)
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()!r} backend, not torch", allow_module_level=True)
from keras.src.legacy.preprocessing import image as keras_image  # noqa: E402

from lightning_reg.core.augment import AugmentConfig, RandomKerasAffine, augment_batch  # noqa: E402
from lightning_reg.core.augment.geometric import AFFINE_KEYS, affine_matrices, warp_affine  # noqa: E402

# Keras' apply_affine_transform calls scipy.ndimage.interpolation.affine_transform (deprecated namespace).
pytestmark = pytest.mark.filterwarnings("ignore:Please import `affine_transform`:DeprecationWarning")
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
# The composed case: rotation 15, shift 4 / -3, shear 8, zoom 1.08 / 0.93.
COMPOSED = dict(angle=15.0, shift_x=4.0, shift_y=-3.0, shear=8.0, zoom_x=1.08, zoom_y=0.93)


def keras_affine(img: np.ndarray, p: dict[str, float], fill_mode: str, cval: float) -> np.ndarray:
    """Keras' ``apply_affine_transform`` (scipy, order 1) on a channels-first image with our parameters.

    Our shifts are content displacements along the documented axes (x right, y down); Keras' ``tx``/``ty``
    move the sampling point, along x and y of its matrix (hence the minus sign). Which config option feeds
    which of them is Keras' business (``get_random_transform`` swaps them, keras-team/keras#17398).
    """
    return keras_image.apply_affine_transform(
        img.copy(),
        theta=p.get("angle", 0.0),
        tx=-p.get("shift_x", 0.0),
        ty=-p.get("shift_y", 0.0),
        shear=p.get("shear", 0.0),
        zx=p.get("zoom_x", 1.0),
        zy=p.get("zoom_y", 1.0),
        row_axis=1,
        col_axis=2,
        channel_axis=0,
        fill_mode=fill_mode,
        cval=cval,
        order=1,
    )


def params(dtype: torch.dtype = torch.float32, **kw: float) -> dict[str, torch.Tensor]:
    p = {k: torch.zeros(1, dtype=dtype) for k in AFFINE_KEYS} | {
        "zoom_x": torch.ones(1, dtype=dtype),
        "zoom_y": torch.ones(1, dtype=dtype),
    }
    return p | {k: torch.full((1,), float(v), dtype=dtype) for k, v in kw.items()}


def ours(img: np.ndarray, p: dict[str, float], fill_mode: str, cval: float, dtype: torch.dtype) -> np.ndarray:
    x = torch.from_numpy(img).to(dtype).unsqueeze(0)
    theta = affine_matrices(params(dtype, **p), img.shape[-2], img.shape[-1])
    return warp_affine(x, theta, fill_mode, cval)[0].double().numpy()


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((2, 28, 28))


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize(
    "p",
    [
        COMPOSED,
        dict(angle=-37.0, shift_x=-6.5, shift_y=2.25, shear=-20.0, zoom_x=0.8, zoom_y=1.3),
        dict(angle=90.0, zoom_x=1.07, zoom_y=1.07),
        dict(shift_x=-11.0, shift_y=9.5),  # far enough for wrap to fold twice on some rows
    ],
    ids=["issue", "strong", "rot90-zoom", "big-shift"],
)
def test_composed_affine_and_fill_modes_match_keras(image: np.ndarray, p: dict[str, float], fill_mode: str) -> None:
    expected = keras_affine(image, p, fill_mode, cval=0.3)
    # float64: the same arithmetic as scipy up to rounding; float32 (what training uses): bilinear rounding.
    assert np.abs(ours(image, p, fill_mode, 0.3, torch.float64) - expected).max() < 1e-9
    assert np.abs(ours(image, p, fill_mode, 0.3, torch.float32) - expected).max() < 1e-5


def test_constant_fill_gives_cval_to_every_sample_outside_and_wrap_has_period_n_minus_1() -> None:
    """The two scipy conventions in isolation, on a ramp: shift by half a pixel and by n - 1 pixels."""
    ramp = np.tile(np.arange(8.0), (1, 8, 1))
    half = ours(ramp, dict(shift_x=0.5), "constant", -1.0, torch.float64)
    assert half[0, 0, 0] == -1.0  # samples x = -0.5: outside, so cval (not a blend of cval and pixel 0)
    assert np.allclose(half[0, 0, 1:], np.arange(7) + 0.5)
    # Period 7 on 8 pixels: a shift by 7 samples x - 7, which wraps to x for 0 < x < 7; x = 0 samples -7 -> 7
    # and x = 7 samples 0 (scipy keeps [0, n - 1] as is). A period of 8 would give 1, ..., 7, 0.
    expected = np.array([7.0, 1, 2, 3, 4, 5, 6, 0])
    assert np.array_equal(ours(ramp, dict(shift_x=7.0), "wrap", 0.0, torch.float64)[0, 0], expected)
    assert np.array_equal(keras_affine(ramp, dict(shift_x=7.0), "wrap", 0.0)[0, 0], expected)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_device_path_matches_keras_per_sample(fill_mode: str) -> None:
    cfg = AugmentConfig(
        rotation_range=30,
        width_shift_range=0.2,
        height_shift_range=0.15,
        shear_range=15,
        zoom_range=0.2,
        fill_mode=fill_mode,
        cval=0.25,
    )
    x = torch.rand(16, 1, 20, 20, generator=torch.Generator().manual_seed(1))
    out, p = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    for i in range(16):
        pi = {k: float(p[k][i]) for k in ("angle", "shift_x", "shift_y", "shear", "zoom_x", "zoom_y")}
        expected = keras_affine(x[i].double().numpy(), pi, fill_mode, 0.25)
        assert np.abs(out[i].double().numpy() - expected).max() < 1e-5, (i, pi)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_cpu_path_matches_keras_per_sample(fill_mode: str) -> None:
    cfg = AugmentConfig(
        augment_on="cpu",
        rotation_range=30,
        width_shift_range=0.2,
        height_shift_range=0.15,
        shear_range=15,
        zoom_range=0.2,
        fill_mode=fill_mode,
        cval=0.25,
    )
    record: list[dict[str, float]] = []
    t = RandomKerasAffine(cfg, record=record)
    torch.manual_seed(3)
    x = torch.rand(8, 1, 20, 20)
    for i in range(8):
        out = t(x[i])
        expected = keras_affine(x[i].double().numpy(), record[-1], fill_mode, 0.25)
        assert np.abs(out.double().numpy() - expected).max() < 1e-5, (i, record[-1])


def correlated_images(n: int = 3000, seed: int = 0) -> np.ndarray:
    """(n, 1, 6, 6) images: correlated interior pixels with their own means, and a border that is always 0
    (like MNIST's), so the second moment has exact null directions."""
    g = np.random.default_rng(seed)
    inner = g.standard_normal((n, 16)) @ g.standard_normal((16, 16)) + g.random(16) * 3
    x = np.zeros((n, 1, 6, 6))
    x[:, 0, 1:5, 1:5] = inner.reshape(n, 4, 4)
    return x


def keras2_zca(x: np.ndarray, epsilon: float) -> np.ndarray:
    """Keras 2.x's ``ImageDataGenerator.fit`` ZCA lines, transcribed (Keras 2 does not install beside Keras 3):
    ``sigma = X^T X / n; u, s, _ = svd(sigma); u * (1 / sqrt(s + eps)) @ u^T``, after the per-channel mean."""
    flat = (x - x.mean(axis=(0, 2, 3), keepdims=True)).reshape(len(x), -1)
    sigma = flat.T @ flat / flat.shape[0]
    u, s, _ = np.linalg.svd(sigma)
    return (u * (1.0 / np.sqrt(s[np.newaxis] + epsilon))).dot(u.T)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("epsilon", [1e-6, 1e-1])
def test_zca_keras3_formula_is_keras_3s_matrix(epsilon: float) -> None:
    from lightning_reg.core.augment import fit_standardizer

    x = correlated_images()
    gen = keras_image.ImageDataGenerator(
        featurewise_center=True, zca_whitening=True, zca_epsilon=epsilon, data_format="channels_first"
    )
    gen.fit(x)
    ours = fit_standardizer(
        torch.from_numpy(x), zca=True, zca_epsilon=epsilon, zca_formula="keras3", zca_pixel_mean=False
    )
    assert relative(ours.zca.double().numpy(), gen.zca_whitening_matrix) < 1e-5
    # And the whole standardisation: Keras' standardize() vs our Standardizer on the same images.
    expected = np.stack([gen.standardize(img.copy()) for img in x[:50]])
    got = ours(torch.from_numpy(x[:50])).double().numpy()
    interior = np.s_[:, :, 1:5, 1:5]  # the null directions multiply zeros (up to rounding) by sqrt(n) / eps
    assert relative(got[interior], expected[interior]) < 1e-4
    # The classic formula is a different matrix where eps matters (here: the null directions).
    classic = fit_standardizer(torch.from_numpy(x), zca=True, zca_epsilon=epsilon, zca_pixel_mean=False)
    assert relative(classic.zca.double().numpy(), gen.zca_whitening_matrix) > 0.1


@pytest.mark.parametrize("epsilon", [1e-6, 1e-1])
def test_zca_classic_formula_is_keras_2s_matrix(epsilon: float) -> None:
    from lightning_reg.core.augment import fit_standardizer

    x = correlated_images()
    ours = fit_standardizer(
        torch.from_numpy(x), zca=True, zca_epsilon=epsilon, zca_formula="classic", zca_pixel_mean=False
    )
    assert relative(ours.zca.double().numpy(), keras2_zca(x, epsilon)) < 1e-5


@pytest.fixture
def keep_global_rngs():
    import random

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


@pytest.mark.usefixtures("keep_global_rngs")
def test_keras_init_matches_keras_dense_and_conv2d_statistics() -> None:
    """The source's MLP layer (Dense 784 -> 500) and CNN layer (Conv2D 3 -> 32, 3x3) built by Keras and by
    ``init="keras"``: the same uniform law (two-sample KS), the same bound, zero biases; torch's default
    initialisation fails the same comparison."""
    from scipy.stats import ks_2samp

    from lightning_reg.models import CNNClassifier, MLPClassifier

    keras.utils.set_random_seed(0)  # seeds Python's, numpy's and torch's global generators; restored below
    dense = keras.layers.Dense(500)
    dense.build((None, 784))
    conv = keras.layers.Conv2D(32, 3)
    conv.build((None, 32, 32, 3))
    torch.manual_seed(0)
    mlp = MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500], init="keras")
    cnn = CNNClassifier(input_shape=(3, 32, 32), init="keras")
    mlp_torch = MLPClassifier(input_shape=(1, 28, 28), hidden_sizes=[500])
    cases = [
        (dense, mlp.net[1], mlp_torch.net[1], (6 / (784 + 500)) ** 0.5),
        (conv, cnn.net[0][0], None, (6 / (3 * 9 + 32 * 9)) ** 0.5),
    ]
    for k_layer, ours_layer, torch_layer, limit in cases:
        k_kernel = keras.ops.convert_to_numpy(k_layer.kernel).ravel()
        k_bias = keras.ops.convert_to_numpy(k_layer.bias)
        w = ours_layer.weight.detach().numpy().ravel()
        assert k_kernel.size == w.size
        assert np.abs(k_kernel).max() <= limit and np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.99 * limit
        assert ks_2samp(w, k_kernel).pvalue > 1e-3
        assert np.isclose(w.std(), k_kernel.std(), rtol=0.02)
        assert not k_bias.any() and not ours_layer.bias.detach().any()
        if torch_layer is not None:
            assert ks_2samp(torch_layer.weight.detach().numpy().ravel(), k_kernel).pvalue < 1e-6
            assert torch_layer.bias.detach().abs().max() > 0


@pytest.mark.parametrize("weight_decay", [None, 0.01])
def test_keras_adam_steps_as_keras_adam(weight_decay: float | None) -> None:
    """20 steps on gradients spanning 1e-6 to 1 (where epsilon's placement matters): ``KerasAdam`` equals
    ``keras.optimizers.Adam`` bit for bit; ``torch.optim.Adam`` does not."""
    from lightning_reg.optim import KerasAdam

    g = torch.Generator().manual_seed(0)
    init = torch.randn(50, generator=g)
    grads = [torch.randn(50, generator=g) * torch.logspace(-6, 0, 50) for _ in range(20)]
    variable = keras.Variable(init.clone())
    k_opt = keras.optimizers.Adam(learning_rate=1e-3, weight_decay=weight_decay)
    ours = torch.nn.Parameter(init.clone())
    opt = KerasAdam([ours], lr=1e-3, weight_decay=weight_decay or 0.0)
    plain = torch.nn.Parameter(init.clone())
    torch_opt = torch.optim.Adam([plain], lr=1e-3)
    for grad in grads:
        k_opt.apply_gradients([(grad.to(variable.value.device), variable)])  # Keras puts it on CUDA if it can
        ours.grad, plain.grad = grad.clone(), grad.clone()
        opt.step()
        torch_opt.step()
    expected = keras.ops.convert_to_numpy(variable.value)
    assert np.array_equal(ours.detach().numpy(), expected)
    assert np.abs(plain.detach().numpy() - expected).max() > 1e-3


def test_non_square_images_turn_about_their_centre_where_keras_uses_a_transposed_one() -> None:
    """A deliberate difference: Keras centres its matrix at (rows/2 - 0.5, cols/2 - 0.5) in (x, y) order, so
    on a non-square image its 180-degree rotation is not the image flipped both ways; ours is."""
    img = np.random.default_rng(0).random((1, 10, 20))
    flipped = img[:, ::-1, ::-1]
    assert np.abs(ours(img, dict(angle=180.0), "nearest", 0.0, torch.float64) - flipped).max() < 1e-9
    assert np.abs(keras_affine(img, dict(angle=180.0), "nearest", 0.0) - flipped).max() > 0.1
    square = img[:, :, :10]  # on square images the two centres coincide
    assert np.abs(keras_affine(square, dict(angle=180.0), "nearest", 0.0) - square[:, ::-1, ::-1]).max() < 1e-9
