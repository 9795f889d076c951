"""Canaries for the private Lightning and torch names in ``lightning_reg/_lightning_internals.py`` and
``lightning_reg/_torch_internals.py``.

Each test checks one internal against the installed versions. When Lightning or torch moves or renames one,
the failure names the internal, where it was expected and the installed version, and so the wrapper to fix.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import lightning
import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_reg import _lightning_internals as internals
from lightning_reg import _torch_internals as torch_internals
from lightning_reg.errors import ConfigError

pytestmark = pytest.mark.oldest_lightning

VERSIONS = f"Lightning {lightning.__version__}, torch {torch.__version__}"


def _moved(what: str, where: str) -> str:
    return (
        f"private internal {what} is gone from {where} in {VERSIONS}; update its wrapper in "
        "lightning_reg/_lightning_internals.py or _torch_internals.py"
    )


def _attr(module_name: str, name: str) -> Any:
    module = importlib.import_module(module_name)
    assert hasattr(module, name), _moved(f"`{name}`", module_name)
    return getattr(module, name)


def _method(cls: type, name: str, params: list[str]) -> None:
    fn = getattr(cls, name, None)
    assert callable(fn), _moved(f"`{cls.__name__}.{name}`", cls.__module__)
    got = [p for p in inspect.signature(fn).parameters if p != "self"]
    assert got == params, (
        f"private internal `{cls.__name__}.{name}` takes {got} in {VERSIONS}, not {params}; "
        "update its wrapper in lightning_reg/_lightning_internals.py"
    )


# --- SIGTERM handling ---------------------------------------------------------------------------------------


def test_sigterm_flag_only_replaces_the_notifier_in_lightnings_composed_handler() -> None:
    import os
    import signal

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    connector = getattr(trainer, "_signal_connector", None)
    assert connector is not None, _moved("`Trainer._signal_connector`", "lightning.pytorch.trainer.trainer")
    assert callable(getattr(connector, "_sigterm_notifier_fn", None)), _moved(
        "`_SignalConnector._sigterm_notifier_fn`", type(connector).__module__
    )
    before = signal.getsignal(signal.SIGTERM)
    connector.register_signal_handlers()
    try:
        handlers = getattr(signal.getsignal(signal.SIGTERM), "signal_handlers", None)
        assert isinstance(handlers, list) and connector._sigterm_notifier_fn in handlers, _moved(
            "`_HandlersCompose.signal_handlers` holding the notifier", type(connector).__module__
        )
        sync = internals.sigterm_flag_only(trainer)
        assert sync is not None and connector._sigterm_notifier_fn not in handlers
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the replacement only notes it
        assert not trainer.received_sigterm
        sync()  # at a step's end on every rank: rank 0's note becomes the flag
        assert trainer.received_sigterm
        assert internals.sigterm_flag_only(trainer) is None  # already replaced: nothing to do
    finally:
        connector.teardown()
    assert signal.getsignal(signal.SIGTERM) == before


# --- DDP launcher -------------------------------------------------------------------------------------------


def test_hydra_subprocess_cmd_is_the_launchers_module_level_command_builder() -> None:
    mod = "lightning.pytorch.strategies.launchers.subprocess_script"
    fn = _attr(mod, "_hydra_subprocess_cmd")
    assert list(inspect.signature(fn).parameters) == ["local_rank"], _moved("`_hydra_subprocess_cmd(local_rank)`", mod)
    launcher = _attr(mod, "_SubprocessScriptLauncher")
    # The launcher must look the builder up as a module global at call time, or swapping it does nothing.
    assert "_hydra_subprocess_cmd(" in inspect.getsource(launcher), _moved("the call to `_hydra_subprocess_cmd`", mod)


def test_hydra_subprocess_command_swaps_the_builder_and_puts_it_back() -> None:
    from lightning.pytorch.strategies.launchers import subprocess_script as mod

    original = mod._hydra_subprocess_cmd
    with internals.hydra_subprocess_command(lambda rank: (["child", str(rank)], "/cwd")):
        assert mod._hydra_subprocess_cmd(3) == (["child", "3"], "/cwd")
    assert mod._hydra_subprocess_cmd is original


# --- Public names whose behaviour on the oldest Lightning replaced an internal ---------------------------------


def test_a_detached_module_s_trainer_raises_runtime_error() -> None:
    """PenaltyLossMixin, the classifier and trainer_of_closure read ``module.trainer`` and take a RuntimeError
    for "attached to no Trainer" (``LightningModule._trainer`` before)."""
    module = pl.LightningModule()
    with pytest.raises(RuntimeError, match="not attached"):
        module.trainer  # noqa: B018 - the property raises
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    assert module.trainer is trainer


def test_a_strategy_s_default_checkpoint_io_is_torch_s_and_can_be_replaced() -> None:
    """AtomicModelCheckpoint gives the strategy an AtomicCheckpointIO in place of the default TorchCheckpointIO
    (``CheckpointSaveHooks`` overrode ``ModelCheckpoint._save_checkpoint`` before)."""
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from lightning_reg.callbacks.checkpoint import AtomicCheckpointIO, use_atomic_checkpoint_io

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert type(trainer.strategy.checkpoint_io) is TorchCheckpointIO
    use_atomic_checkpoint_io(trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_get_filesystem_tells_local_paths_from_remote_ones() -> None:
    """``_is_local_file_protocol`` before; the CSV writer and AtomicCheckpointIO ask fsspec through Lightning."""
    from fsspec.implementations.local import LocalFileSystem
    from lightning.fabric.utilities.cloud_io import get_filesystem

    assert isinstance(get_filesystem("/tmp/x.ckpt"), LocalFileSystem)
    assert not isinstance(get_filesystem("memory://bucket/x.ckpt"), LocalFileSystem)


# --- EarlyStopping, Callback ---------------------------------------------------------------------------------


def test_precision_plugin_passes_the_module_in_the_closure_partial() -> None:
    """trainer_of_closure reads Lightning's ``partial(self._wrap_closure, model, optimizer, closure)``."""
    from lightning.pytorch.plugins.precision import Precision

    source = inspect.getsource(Precision.optimizer_step)
    assert "partial(self._wrap_closure, model, optimizer, closure)" in source, _moved(
        "the closure layout `partial(self._wrap_closure, model, optimizer, closure)`",
        "lightning.pytorch.plugins.precision.Precision.optimizer_step",
    )


def test_trainer_of_closure_finds_the_trainer_in_a_real_fit() -> None:
    seen: list[Any] = []

    class Recorder(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            seen.append(internals.trainer_of_closure(closure))
            return super().step(closure)

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return Recorder(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Tiny(), data)
    assert seen == [trainer], _moved("the Trainer behind the optimizer-step closure", "Lightning's precision plugin")


# --- Loops, loggers, weight averaging -----------------------------------------------------------------------


def test_loop_restart_flags() -> None:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert hasattr(trainer.fit_loop, "restarted_on_epoch_end"), _moved(
        "`_FitLoop.restarted_on_epoch_end`", "lightning.pytorch.loops.fit_loop"
    )
    assert hasattr(trainer.fit_loop.epoch_loop, "restarted_on_last"), _moved(
        "`_TrainingEpochLoop.restarted_on_last`", "lightning.pytorch.loops.training_epoch_loop"
    )
    assert internals.replaying_epoch_end(trainer) is False


def test_csv_writer_private_hooks_and_logger_cache(tmp_path: Any) -> None:
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    _method(ExperimentWriter, "_check_log_dir_exists", [])
    _method(ExperimentWriter, "_rewrite_with_new_header", ["fieldnames"])
    from lightning_reg.app.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="csv", version="")
    for attr in ("_experiment", "_fs"):
        assert hasattr(logger, attr), _moved(f"`CSVLogger.{attr}`", "lightning.pytorch.loggers.csv_logs")
    assert isinstance(logger.experiment, internals.AppendingCSVExperimentWriter)


def test_weight_averaging_keeps_its_average_in_average_model() -> None:
    if not internals.HAS_WEIGHT_AVERAGING:
        pytest.skip(f"WeightAveraging is new in Lightning 2.6; this is {lightning.__version__}")
    from lightning.pytorch.callbacks import EMAWeightAveraging

    ema = EMAWeightAveraging(decay=0.9)
    assert hasattr(ema, "_average_model"), _moved(
        "`WeightAveraging._average_model`", "lightning.pytorch.callbacks.weight_averaging"
    )
    assert internals.averaged_module(ema) is None  # not built before setup


def test_ema_config_is_a_config_error_without_weight_averaging() -> None:
    if internals.HAS_WEIGHT_AVERAGING:
        assert internals.missing_target_reason("lightning.pytorch.callbacks.EMAWeightAveraging") is None
        return
    from lightning_reg.app.build import _instantiate_dict

    node = {"ema": {"_target_": "lightning.pytorch.callbacks.EMAWeightAveraging", "decay": 0.99}}
    with pytest.raises(ConfigError, match=r"callbacks\.ema.*EMAWeightAveraging needs Lightning >= 2\.6"):
        _instantiate_dict(node, "callbacks", pl.Callback)


# --- torch --------------------------------------------------------------------------------------------------


def test_torch_norm_and_conv_base_classes() -> None:
    norms = (nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.InstanceNorm2d(2), nn.SyncBatchNorm(2))
    assert all(isinstance(m, torch_internals.NORM_BASE_TYPES) for m in norms), _moved(
        "`_NormBase` as the base of BatchNorm/InstanceNorm", "torch.nn.modules.batchnorm"
    )
    convs = (nn.Conv1d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.Conv3d(1, 1, 1), nn.ConvTranspose2d(1, 1, 1))
    assert all(isinstance(m, torch_internals.CONV_TYPES) for m in convs), _moved(
        "`_ConvNd` as the base of the convolutions", "torch.nn.modules.conv"
    )
    assert isinstance(nn.ConvTranspose1d(1, 1, 1), torch_internals.CONV_TRANSPOSE_TYPES), _moved(
        "`_ConvTransposeNd`", "torch.nn.modules.conv"
    )
    assert not isinstance(nn.Conv2d(1, 1, 1), torch_internals.CONV_TRANSPOSE_TYPES)


def test_torch_foreach_ops_compute_what_their_plain_forms_compute() -> None:
    a, b = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0, -0.5]])], [torch.tensor([0.5, 0.5]), torch.ones(1, 2)]
    ti = torch_internals
    for name in ("add_", "clamp_max", "clamp_min_", "copy_", "mul_", "norm", "sign", "sub_"):
        assert getattr(ti, f"foreach_{name}") is _attr("torch", f"_foreach_{name}"), name
    assert [t.tolist() for t in ti.foreach_sign(a)] == [[1.0, -1.0], [[1.0, -1.0]]]
    assert [float(n) for n in ti.foreach_norm(a, 1)] == [3.0, 3.5]
    assert [t.tolist() for t in ti.foreach_clamp_max(a, 1.0)] == [[1.0, -2.0], [[1.0, -0.5]]]
    x = [t.clone() for t in a]
    ti.foreach_add_(x, b, alpha=2.0)
    assert [t.tolist() for t in x] == [[2.0, -1.0], [[5.0, 1.5]]]
    ti.foreach_sub_(x, b)
    ti.foreach_mul_(x, 2.0)
    ti.foreach_clamp_min_(x, 0.0)
    assert [t.tolist() for t in x] == [[3.0, 0.0], [[8.0, 1.0]]]
    ti.foreach_copy_(x, a)
    assert all(torch.equal(u, v) for u, v in zip(x, a, strict=True))


def test_module_children_dict() -> None:
    net = nn.Sequential(nn.ReLU())
    assert isinstance(getattr(net, "_modules", None), dict), _moved("`nn.Module._modules` (a dict)", "torch.nn")
    net.add_module("extra", nn.Tanh())
    assert isinstance(torch_internals.child_module(net, "extra"), nn.Tanh)
    assert torch_internals.child_module(net, "missing") is None


def test_callback_metrics_store_is_the_dict_behind_the_property() -> None:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    connector = getattr(trainer, "_logger_connector", None)
    assert connector is not None and isinstance(getattr(connector, "_callback_metrics", None), dict), _moved(
        "`Trainer._logger_connector._callback_metrics`", "lightning.pytorch.trainer.connectors.logger_connector"
    )
    store = internals.callback_metrics_store(trainer)
    store["reg/probe"] = torch.tensor(0.25)
    assert float(trainer.callback_metrics["reg/probe"]) == 0.25  # a value written there is what readers see


# --- Lightning's console messages (lightning_reg.app.run_log) --------------------------------------------------


def test_rank_zero_info_writes_to_the_rank_zero_loggers() -> None:
    import logging

    from lightning.pytorch.utilities import rank_zero_info

    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.name)

    grab = Grab(level=logging.DEBUG)
    loggers = internals.rank_zero_loggers()
    for lg in loggers:
        lg.addHandler(grab)
    try:
        rank_zero_info("canary: rank_zero_info")
    finally:
        for lg in loggers:
            lg.removeHandler(grab)
    assert seen and seen[0] in {lg.name for lg in loggers}, _moved(
        "the logger that `rank_zero_info` writes to", "lightning_utilities.core.rank_zero.log"
    )


def test_pytree_module_that_the_leafspec_warning_filter_names_exists() -> None:
    # Where it still calls LeafSpec() under a torch that deprecates it, tests/app/test_run_log.py sees the warning go.
    try:
        importlib.import_module(internals.PYTREE_MODULE)
    except ImportError:
        pytest.fail(_moved("module", internals.PYTREE_MODULE))


def test_store_epoch_end_values_writes_the_dicts_behind_both_properties() -> None:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    connector = getattr(trainer, "_logger_connector", None)
    assert connector is not None and isinstance(getattr(connector, "_logged_metrics", None), dict), _moved(
        "`Trainer._logger_connector._logged_metrics`", "lightning.pytorch.trainer.connectors.logger_connector"
    )
    assert internals.store_epoch_end_values(trainer, {"reg/probe": 0.25}, torch.device("cpu"))
    for metrics in (trainer.callback_metrics, trainer.logged_metrics):  # what readers see
        assert metrics["reg/probe"].dtype == torch.float32 and float(metrics["reg/probe"]) == 0.25
