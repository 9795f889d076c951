"""The multirun policy of app/job.py around any train function: what a job returns, records and exits with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_reg.app.config import compose_train_config
from lightning_reg.app.job import run, trial_callback
from lightning_reg.errors import ConfigError
from lightning_reg.metrics_file import RunMetrics


def _cfg(tmp_path: Path, *overrides: str):
    return compose_train_config([f"paths.output_dir={tmp_path / 'run'}", *overrides])


def test_a_finished_job_returns_its_optimized_value(tmp_path: Path) -> None:
    def train(cfg) -> RunMetrics:
        return {"status": "completed", "optimized_value": 0.75}

    assert run(_cfg(tmp_path), train) == 0.75

    def train_two(cfg) -> RunMetrics:
        return {"status": "completed", "optimized_value": [0.75, None]}

    assert run(_cfg(tmp_path), train_two) is None  # one objective missing: no value for the sweeper


def test_bad_input_exits_2_without_a_record_and_a_crash_is_recorded_and_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def bad(cfg) -> RunMetrics:
        raise ConfigError("`lr` must be > 0; got 0.")

    with pytest.raises(SystemExit) as exit_info:
        run(_cfg(tmp_path), bad)
    assert exit_info.value.code == 2
    assert "lightning_reg: error: `lr` must be > 0; got 0." in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.json").exists()

    def crash(cfg) -> RunMetrics:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(_cfg(tmp_path), crash)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == "RuntimeError: boom"


def test_the_trial_callback_is_found_by_its_class_name() -> None:
    class TrialPruning:  # the name the sweeper's callback has; nothing else is read
        pass

    class Other:
        pass

    found = TrialPruning()
    assert trial_callback([Other(), found, TrialPruning()]) is found
    assert trial_callback([Other()]) is None
