"""pytest's set-up for the doctests in lightning_reg (collected with ``--doctest-modules``).

The examples make their files with :func:`tempfile.mkdtemp`, as a user would; here that lands in the test's own
``tmp_path``, which pytest removes with its other old temporary directories, instead of in ``/tmp``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _doctest_temp_dir(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        tmp_path: Path = request.getfixturevalue("tmp_path")
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
