"""The wheel carries conf/ inside the package, and a non-editable install runs the Hydra entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "hatchling" in (proc.stderr + proc.stdout):
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(REPO)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("lightning_reg-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_package_and_every_config(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "lightning_reg/app/train.py" in names
    assert "lightning_reg/conf/train.yaml" in names
    for conf in (REPO / "conf").rglob("*.yaml"):
        rel = "lightning_reg/conf/" + conf.relative_to(REPO / "conf").as_posix()
        assert rel in names, f"{rel} missing from the wheel"
    assert not any(n.startswith("tests/") for n in names)
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "lightning-reg-train = lightning_reg.train:main" in text


@pytest.mark.slow
def test_non_editable_install_runs_the_entry_point(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"  # not the repository: conf/ must come from the installed package
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import lightning_reg.app.train as t; print(t.__file__, t.CONF_DIR)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(target)) and str(target / "lightning_reg" / "conf") in where.stdout
    run = subprocess.run(
        [sys.executable, "-m", "lightning_reg.train", "trainer=debug", "hydra.run.dir=run"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and "test/acc" in metrics["test"]
