"""The cheaper per-step paths of the callbacks give the same results as the formulas they replace, to the bit.

- ``max_norm_inplace`` (a norm check that skips ``renorm_`` when every unit is provably inside) == ``renorm_``;
- ``MaxNorm`` over a training run (the check, its back-off after a kernel had units outside) == ``renorm_`` after
  every step of the same run;
- ``WeightPenalty`` in one ``no_grad`` context over buckets, skipping gradients that are None == the old
  ``add_penalty_grad_`` per bucket;
- ``EarlyStopping``'s best-weights copy written in place == a fresh copy, and tensors handed out never change;
- memoized ``state_key`` == the key built from scratch, and it follows an attribute change;
- ``EarlyStopping``'s diagnostics written straight into ``callback_metrics``/``logged_metrics`` when the trainer has
  no logger == what ``self.log`` leaves there.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_reg import EarlyStopping, MaxNorm, ScheduledDropout, WeightPenalty
from lightning_reg.core.penalties import add_penalty_grad_, max_norm_inplace
from lightning_reg.core.stopping import make_criterion

from helpers import TinyModule, loaders

QUIET = dict(
    accelerator="cpu",
    devices=1,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
    logger=False,
)


def _kernels(dtype: torch.dtype, dim: int, radius: float) -> list[torch.Tensor]:
    """Kernels with units well inside, well outside, and within a few ulps of the radius on both sides."""
    g = torch.Generator().manual_seed(0)
    out = []
    for shape in [(7, 13), (5, 3, 3, 3), (4, 300)]:
        w = torch.randn(*shape, generator=g, dtype=dtype)
        units = w.movedim(dim, 0)
        norms = torch.linalg.vector_norm(units.reshape(units.shape[0], -1).double(), dim=1)
        for i, target in enumerate([0.1, 0.5, 0.999999, 1.0, 1.0000001, 2.0, 0.3]):
            if i < units.shape[0]:
                units[i].mul_((radius * target / norms[i]).to(dtype))
        out.append(w)
    inside = torch.randn(6, 50, generator=g, dtype=dtype)
    out.append(inside * (0.5 * radius / torch.linalg.vector_norm(inside, dim=1, keepdim=True)))
    edge = torch.randn(6, 50, generator=g, dtype=dtype)  # every unit a hair inside: within the rounding margin
    out.append(edge * (radius * (1 - 1e-7) / torch.linalg.vector_norm(edge, dim=1, keepdim=True)))
    nan = torch.randn(3, 4, generator=g, dtype=dtype) * 1e-3
    nan[1, 2] = float("nan")
    out.append(nan)
    out.append(torch.empty(0, 5, dtype=dtype))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("check", [True, False])
def test_max_norm_inplace_equals_renorm_to_the_bit(dtype, dim, check):
    radius = 3.0
    skipped = 0
    for w in _kernels(dtype, dim, radius):
        expected = w.clone().renorm_(2, dim, radius)
        got = w.clone()
        ran = max_norm_inplace(got, radius, dim, check=check)
        skipped += not ran
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num(), expected.nan_to_num()), (tuple(w.shape), dim, dtype)
    if check and dtype in (torch.float32, torch.float64):
        assert skipped >= 1, "the all-inside kernel must take the skip path (else this test does not test it)"
    else:
        assert skipped == 0 or dtype in (torch.float32, torch.float64)


class Wide(TinyModule):
    """A large learning rate, so units cross the max-norm radius during the run (both paths are exercised)."""

    def __init__(self, lr: float) -> None:
        super().__init__(dim=16, hidden=32, lr=lr)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class RenormEveryStep(pl.Callback):
    """The reference: ``renorm_`` on every selected kernel right after every optimizer step."""

    def __init__(self, radius: float) -> None:
        self.radius = radius

    def on_fit_start(self, trainer, pl_module):
        kernels = [p for p in pl_module.parameters() if p.ndim >= 2]

        def hook(optimizer, args, kwargs):
            with torch.no_grad():
                for p in kernels:
                    p.renorm_(2, 0, self.radius)

        self.handle = trainer.optimizers[0].register_step_post_hook(hook)


@pytest.mark.parametrize("lr,radius", [(0.5, 1.0), (0.05, 3.0)], ids=["binding", "slack"])
def test_max_norm_callback_equals_renorm_after_every_step(lr, radius):
    def run(callback):
        torch.manual_seed(0)
        model = Wide(lr)
        train, _ = loaders(n=512, batch_size=32)
        pl.Trainer(max_epochs=2, limit_train_batches=16, limit_val_batches=0, callbacks=[callback], **QUIET).fit(
            model, train
        )
        return model

    mn = MaxNorm(radius)
    got, expected = run(mn), run(RenormEveryStep(radius))
    for (name, a), b in zip(got.state_dict().items(), expected.state_dict().values()):
        assert torch.equal(a, b), name
    assert mn._steps == 32


def test_weight_penalty_gradient_equals_add_penalty_grad_per_bucket_with_a_frozen_kernel():
    class Frozen(TinyModule):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Capture(pl.Callback):
        """Runs after WeightPenalty: the gradients the optimizer is about to read."""

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.grads = {n: None if p.grad is None else p.grad.clone() for n, p in pl_module.named_parameters()}

    class Before(pl.Callback):
        """Runs before WeightPenalty: the gradients it starts from."""

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.grads = {n: None if p.grad is None else p.grad.clone() for n, p in pl_module.named_parameters()}
            self.weights = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    torch.manual_seed(0)
    model = Frozen()
    model.net[0].weight.requires_grad_(False)  # its .grad stays None: the penalty must skip it
    before, capture = Before(), Capture()
    penalty = WeightPenalty(l1=1e-3, l2=1e-2, groups={"net.2.*": {"l2": 0.05}})
    train, _ = loaders(n=64, batch_size=32)
    pl.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[before, penalty, capture], **QUIET
    ).fit(model, train)
    assert capture.grads["net.0.weight"] is None
    name = "net.2.weight"
    expected = before.grads[name].clone()
    add_penalty_grad_([before.weights[name]], [expected], l1=1e-3, l2=0.05)
    assert torch.equal(capture.grads[name], expected)
    assert torch.equal(capture.grads["net.0.bias"], before.grads["net.0.bias"]), "biases are not penalized"


class Scripted(TinyModule):
    """Validation loss scripted per epoch; the weights at each check are kept."""

    def __init__(self, values) -> None:
        super().__init__()
        self.values = list(values)
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.values[self.current_epoch]))

    def on_validation_epoch_end(self):
        self.snapshots[self.current_epoch] = {k: v.detach().clone() for k, v in self.state_dict().items()}


class ReadBest(pl.Callback):
    """Reads ``best_weights`` after the check of ``epoch`` and keeps clones and the tensors themselves."""

    def __init__(self, es: EarlyStopping, epoch: int) -> None:
        self.es, self.epoch = es, epoch
        self.held: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            self.held = self.es.restorer.best_weights
            self.best_epoch = self.es.best_epoch  # Lightning runs EarlyStopping's epoch-end hook after ours
            self.values = {k: v.clone() for k, v in self.held.items()}


@pytest.mark.parametrize("read_at", [None, 1], ids=["never-read", "read-mid-run"])
def test_best_weights_written_in_place_equal_a_fresh_copy_and_handed_out_tensors_never_change(read_at):
    values = [1.0, 0.9, 0.8, 0.7, 0.9, 0.95]  # improvements at epochs 0-3: three in-place rewrites
    torch.manual_seed(0)
    model = Scripted(values)
    es = EarlyStopping("val/score", patience=10, restore_best_weights=True)
    reader = None if read_at is None else ReadBest(es, read_at)
    callbacks: list[pl.Callback] = [es] if reader is None else [es, reader]  # the reader's hooks run after es's
    train, val = loaders(n=64, batch_size=16)
    pl.Trainer(max_epochs=len(values), limit_train_batches=2, callbacks=callbacks, **QUIET).fit(model, train, val)
    for k, v in model.state_dict().items():
        assert torch.equal(v, model.snapshots[3][k]), k
    assert es.best_epoch == 3
    for k, v in es.restorer.best_weights.items():
        assert torch.equal(v, model.snapshots[3][k]), k
    if reader is not None:
        for k, v in reader.held.items():  # the dict handed out at epoch 1 still holds epoch 1's weights
            assert torch.equal(v, reader.values[k]) and torch.equal(v, model.snapshots[reader.best_epoch][k]), k
        assert reader.best_epoch in (0, 1) and es.best_epoch > reader.best_epoch, "improvements came after the read"


def test_memoized_state_keys_equal_fresh_keys_and_follow_attribute_changes():
    wp, mn = WeightPenalty(l2=1e-4), MaxNorm(3.0)
    es = EarlyStopping("val/loss", patience=3, restore_best_weights=True)
    sd = ScheduledDropout({"name": "linear", "start": 0.2, "end": 0.1, "end_at": 10}, interval="step")
    fresh = {
        "wp": lambda: wp._generate_state_key(
            l1=0.0, l2=wp.spec.l2, mode=wp.mode, include=None, exclude=None, groups=None
        ),
        "mn": lambda: mn._generate_state_key(max_norm=mn.max_norm, include=None, exclude=None),
        "es": es._build_state_key,
    }
    for cb, name in ((wp, "wp"), (mn, "mn"), (es, "es")):
        assert cb.state_key == cb.state_key == fresh[name]()
    first = sd.state_key
    assert sd.state_key is first, "a second read is served from the memo"
    mn.max_norm = 4.0
    es.rule = make_criterion("GL", alpha=5.0, monitor="val/loss")  # a new criterion: its name and options join the key
    wp.mode = "decoupled"
    sd.schedule.end = 0.05
    assert "'max_norm': 4.0" in mn.state_key and mn.state_key == fresh["mn"]()
    assert "'alpha': 5.0" in es.state_key and es.state_key == fresh["es"]()
    assert "'mode': 'decoupled'" in wp.state_key
    assert "end=0.05" in sd.state_key and sd.state_key != first
    sd.names.append("net.*")  # in-place change of a list argument
    assert "net.*" in sd.state_key


def test_scheduled_dropout_reuses_the_rate_tensor_only_for_an_equal_rate():
    torch.manual_seed(0)
    model = TinyModule(dropout=0.2)
    seen = []

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.callback_metrics["reg/dropout_p"])

    sd = ScheduledDropout({0: 0.2, 1: 0.1}, interval="epoch", verbose=False)
    train, _ = loaders(n=64, batch_size=16)
    pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=[sd, Watch()], **QUIET).fit(
        model, train
    )
    assert [round(float(t), 6) for t in seen] == [0.2] * 3 + [0.1] * 3
    assert seen[0] is seen[2] and seen[3] is seen[5] and seen[2] is not seen[3]
    assert isinstance(model.net[2], nn.Dropout) and model.net[2].p == 0.1


class EarlyStoppingValues(pl.Callback):
    """EarlyStopping's diagnostics as ``callback_metrics`` and ``logged_metrics`` hold them at each epoch start and
    at the end of fit: (dtype, device, value), or absent."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def _record(self, trainer: pl.Trainer, where: str) -> None:
        def es(metrics: dict) -> dict:
            return {k: (v.dtype, v.device, v.item()) for k, v in metrics.items() if k.startswith("es/")}

        self.seen.append((where, trainer.current_epoch, es(trainer.callback_metrics), es(trainer.logged_metrics)))

    def on_train_epoch_start(self, trainer, pl_module):
        self._record(trainer, "epoch start")

    def on_fit_end(self, trainer, pl_module):
        self._record(trainer, "fit end")


@pytest.mark.parametrize(
    ("kwargs", "stop", "keys"),
    [
        ({"patience": 2}, 3, {"es/wait", "es/gl"}),
        ({"criterion": "UP", "s": 3, "strip": 1}, 4, {"es/wait", "es/gl", "es/up"}),
    ],
    ids=["patience", "UP"],
)
def test_early_stopping_diagnostics_without_a_logger_are_what_self_log_leaves_with_one(kwargs, stop, keys):
    # Without loggers EarlyStopping writes its diagnostics into callback_metrics/logged_metrics itself; with a
    # logger they go through self.log. What callbacks and user code can read must be the same.
    from helpers import MemoryLogger

    values = [1.0, 0.9, 0.95, 0.97, 0.99, 1.0]

    def run(logger):
        torch.manual_seed(0)
        probe = EarlyStoppingValues()
        es = EarlyStopping("val/score", **kwargs)
        trainer = pl.Trainer(
            max_epochs=len(values), limit_train_batches=2, callbacks=[es, probe], **{**QUIET, "logger": logger}
        )
        trainer.fit(Scripted(values), *loaders(n=64, batch_size=16))
        return probe.seen, es.stopped_epoch

    through_log, stopped = run(MemoryLogger())
    direct, stopped_direct = run(False)
    assert stopped == stopped_direct == stop
    assert direct == through_log
    where, _, callback, logged = direct[-1]
    assert where == "fit end" and set(callback) == set(logged) == keys
    assert callback["es/wait"] == (torch.float32, torch.device("cpu"), float(stop - 1))
