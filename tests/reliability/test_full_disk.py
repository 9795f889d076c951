"""A full disk (a real 3 MB tmpfs filled to the last byte) loses nothing: every file we write is replaced
atomically or not at all, the error is one line naming the file and the cause, and the run stays resumable.

Needs root (or CAP_SYS_ADMIN) to mount a tmpfs; skipped, with the reason, where the machine does not allow it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lightning_reg.atomic import WriteError, atomic_write, write_text
from lightning_reg.metrics_file import read_metrics, write_metrics

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"this machine does not allow a tmpfs mount: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem refuses (ENOSPC); return the filler to delete later."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == 28, err
    return filler


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_each_writer_on_a_full_disk_keeps_the_previous_file(small_disk: Path) -> None:
    from lightning_reg._lightning_internals import AppendingCSVExperimentWriter

    metrics = write_metrics(small_disk / "metrics.json", {"status": "completed", "last_epoch": 3})
    report = write_text(small_disk / "report.md", "# the old report\n")
    csv_dir = small_disk / "csv"
    writer = AppendingCSVExperimentWriter(str(csv_dir))
    writer.log_metrics({"loss": 1.0}, step=0)
    writer.save()
    csv_before = (csv_dir / "metrics.csv").read_text()
    fill(small_disk)

    with pytest.raises(WriteError) as err:
        write_metrics(metrics, {"status": "failed", "error": "x" * 100_000})
    assert str(err.value).startswith(f"could not write {metrics}: No space left on device (ENOSPC)")
    assert "\n" not in str(err.value)
    assert read_metrics(metrics)["status"] == "completed"  # the old file, whole

    with pytest.raises(WriteError, match="report.md: No space left on device"):
        with atomic_write(report) as fh:
            fh.write("# new\n" * 100_000)
    assert report.read_text() == "# the old report\n"

    writer.log_metrics({"loss": 0.5, "acc": 0.1}, step=1)  # a new column: the whole file rewritten
    writer.metrics *= 5000
    with pytest.raises(WriteError, match="metrics.csv: No space left on device"):
        writer.save()
    writer.metrics = [{"loss": 0.25, "step": 2}] * 20000  # no new column: appended
    with pytest.raises(WriteError, match="metrics.csv: No space left on device"):
        writer.save()
    assert (csv_dir / "metrics.csv").read_text() == csv_before  # no partial row

    assert leftovers(small_disk) == []


def _train(run: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lightning_reg.train",
        f"hydra.run.dir={run}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("LOCAL_RANK", None)
    return env


def test_a_run_whose_disk_fills_up_says_so_in_one_line_and_resumes(small_disk: Path, tmp_path: Path) -> None:
    run = small_disk / "run"
    last = run / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        _train(run, "trainer.max_epochs=400"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not last.exists():  # the first epoch's checkpoint is written: now the disk fills up
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    filler = fill(small_disk)
    stdout, stderr = proc.communicate(timeout=180)

    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("lightning_reg: error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert f"could not write {run}" in errors[0] and "No space left on device (ENOSPC)" in errors[0], errors
    # Nothing older damaged: the last checkpoint loads, no partial or temporary file, no empty metrics.json.
    epoch = torch.load(last, weights_only=False, map_location="cpu")["epoch"]
    assert leftovers(run) == []
    assert not (run / "metrics.json").exists() or read_metrics(run / "metrics.json")["status"] == "failed"

    filler.unlink()  # space again: the run resumes from its last checkpoint and finishes
    resumed = subprocess.run(
        _train(run, f"trainer.max_epochs={epoch + 3}", "ckpt_path=last"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "completed", record.get("error")
    assert record["epochs_completed"] == epoch + 3


def test_a_new_csv_column_on_a_full_disk_never_leaves_rows_longer_than_the_header(small_disk: Path) -> None:
    # Found by CI: the header rewrite for a new column failed on the full disk, the keys were already extended,
    # and the save Lightning retries at teardown appended rows longer than the header; resuming then failed.
    import csv

    from lightning_reg._lightning_internals import AppendingCSVExperimentWriter

    writer = AppendingCSVExperimentWriter(str(small_disk / "logs"))
    for step in range(400):  # > 4 KB, so rewriting it needs more than the one page left free below
        writer.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    writer.save()
    page = small_disk / "page"
    page.write_bytes(b"\0" * 4096)
    filler = fill(small_disk)
    page.unlink()  # exactly one page free: a short row fits, a rewrite of the file does not
    writer.log_metrics({"loss": 0.5, "acc": 0.75}, step=400)
    for _ in range(2):  # the save, then Lightning's retry in logger.finalize
        with pytest.raises(WriteError):
            writer.save()
    filler.unlink()
    writer.save()
    with open(writer.metrics_file_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(None not in row for row in rows) and len(rows) == 401
    assert rows[-1]["acc"] == "0.75" and rows[0]["acc"] == ""
