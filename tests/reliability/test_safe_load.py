"""Checkpoints a user hands us are read without running code pickled in them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from lightning_reg.errors import ConfigError
from lightning_reg.safe_load import Inert, load_checkpoint_tensors


class Booby:
    """Unpickling this runs ``call(*args)``: it could be any code."""

    def __init__(self, call, *args) -> None:  # noqa: ANN001
        self.call, self.args = call, args

    def __reduce__(self):  # noqa: ANN204
        return (self.call, self.args)


def _save(path: Path, booby: Booby) -> None:
    torch.save({"state_dict": {"w": torch.arange(3.0)}, "epoch": 4, "hyper_parameters": {"x": booby}}, path)


def test_pickled_code_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    _save(path, Booby(subprocess.check_call, ["mkdir", str(marker)]))
    ckpt = load_checkpoint_tensors(path)
    assert not marker.exists()
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(3.0)) and ckpt["epoch"] == 4
    assert isinstance(ckpt["hyper_parameters"]["x"], Inert) and "check_call" in repr(ckpt["hyper_parameters"]["x"])
    # The same file with an unrestricted load does run it: the test above is not vacuous.
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_a_checkpoint_naming_a_blocked_module_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    _save(path, Booby(os.makedirs, str(marker)))
    with pytest.raises(ConfigError, match="cannot be read safely, and was not run.*os.makedirs"):
        load_checkpoint_tensors(path)
    assert not marker.exists()
