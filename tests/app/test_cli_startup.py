"""The commands answer ``--help`` and argument errors without importing Lightning or torch, and the main job's
launching process imports neither (its joblib workers and the job itself do).

Each command runs in a fresh interpreter, as ``python -m`` runs it, through a small wrapper that then prints
which heavy packages ended up in ``sys.modules``: the check is on imports, not on timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

WRAPPER = """
import json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in ("lightning", "torch", "hydra") if m in sys.modules)}))
"""


def run_cli(module: str, *args: str) -> tuple[dict, str, str]:
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, module, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    *text, last = proc.stdout.strip().splitlines()
    return json.loads(last), "\n".join(text), proc.stderr


@pytest.mark.parametrize("module", ["lightning_reg.report", "lightning_reg.preview"])
def test_help_does_not_import_lightning_or_torch(module: str) -> None:
    result, out, _ = run_cli(module, "--help")
    assert result["code"] == 0 and f"usage: python -m {module}" in out
    assert result["loaded"] == [], result


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("lightning_reg.report", (), "give a multirun directory, or --storage URL --study NAME"),
        ("lightning_reg.report", ("--storage", "sqlite:///x.db"), "--storage and --study go together"),
        ("lightning_reg.preview", ("--images", "0"), "argument --images: must be an integer >= 1; got '0'"),
        ("lightning_reg.preview", ("--draws", "two"), "argument --draws: must be an integer >= 1; got 'two'"),
    ],
)
def test_argument_errors_do_not_import_lightning_or_torch(module: str, args: tuple[str, ...], message: str) -> None:
    result, _, err = run_cli(module, *args)
    assert result["code"] == 2 and message in err
    assert result["loaded"] == [], result


def test_the_package_imports_its_public_names_on_first_use() -> None:
    code = (
        "import sys, lightning_reg; before = 'lightning' in sys.modules; "
        "cls = lightning_reg.WeightPenalty; sub = lightning_reg.callbacks; "
        "print(before, 'lightning' in sys.modules, cls.__name__, sub.__name__, 'WeightPenalty' in dir(lightning_reg))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["False", "True", "WeightPenalty", "lightning_reg.callbacks", "True"], proc.stderr
    proc = subprocess.run(
        [sys.executable, "-c", "import lightning_reg; lightning_reg.NoSuchThing"], capture_output=True, text=True
    )
    assert "AttributeError: module 'lightning_reg' has no attribute 'NoSuchThing'" in proc.stderr


@pytest.mark.parametrize("args", [("--help",), ("--cfg", "job", "experiment=regularizers_digits")])
def test_train_entry_point_composes_without_importing_lightning_or_torch(args: tuple[str, ...]) -> None:
    result, out, _ = run_cli("lightning_reg.train", *args)
    assert result["code"] == 0
    assert ("train is powered by Hydra" in out) if args == ("--help",) else ("task_name: regularizers_digits" in out)
    assert result["loaded"] == ["hydra"], result


def test_joblib_multirun_parent_leaves_lightning_to_its_workers(tmp_path: Path) -> None:
    """Two runs of the main job under its joblib preset: both complete, and the launching process (which only
    composes, launches and writes the report) never imported Lightning or torch."""
    result, out, err = run_cli(
        "lightning_reg.train",
        "-m",
        "experiment=regularizers_digits",
        "variant/regularizers_digits=baseline",
        "seed=1,2",
        "trainer.max_epochs=1",
        "test=false",
        "hydra.callbacks.report.plots=false",
        f"paths.log_dir={tmp_path}",
    )
    assert result["code"] in (0, None), err
    assert "n_jobs=2" in out, out
    metrics = sorted(tmp_path.rglob("metrics.json"))
    assert [json.loads(p.read_text())["status"] for p in metrics] == ["completed", "completed"]
    assert sorted(p.name for p in tmp_path.rglob("report.md")) == ["report.md"]
    assert "lightning" not in result["loaded"] and "torch" not in result["loaded"], result
