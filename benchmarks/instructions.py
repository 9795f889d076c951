"""Instruction counts from ``valgrind --tool=callgrind``: a measure that does not depend on the machine's load.

Wall time on a shared machine moves by several percent between runs; the number of instructions a piece of
code executes does not (with one thread: an idle OpenMP worker's spin-wait would be counted too). Only the
regions we mark are counted:

- the benchmark re-runs itself under ``valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no``, so
  the imports run uninstrumented (a few times slower than native, not the ~50x of full instrumentation);
- a tiny C library built here with ``gcc`` from ``valgrind/callgrind.h`` issues the client requests
  (``CALLGRIND_START_INSTRUMENTATION``, ``ZERO_STATS``, ``TOGGLE_COLLECT``, ``DUMP_STATS_AT``): each
  :func:`region` is one dump file whose ``totals:`` line is the region's instruction count (``Ir``);
- :func:`read_counts` collects them by region name in the parent.

Outside valgrind the client requests are a few no-op instructions, so the same code runs natively.
Needs ``valgrind`` (``apt-get install -y valgrind``, with its headers) and a C compiler; :func:`available` says why
not otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SOURCE = r"""
#include <valgrind/callgrind.h>
void cg_instrument(int on) { if (on) { CALLGRIND_START_INSTRUMENTATION; } else { CALLGRIND_STOP_INSTRUMENTATION; } }
void cg_begin(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cg_end(const char *name) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT(name); }
int cg_running(void) { return RUNNING_ON_VALGRIND; }
"""
_HEADER = Path("/usr/include/valgrind/callgrind.h")
_lib: ctypes.CDLL | None = None


def available() -> str | None:
    """None when instruction counts can be taken here, else the reason."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (apt-get install -y valgrind)"
    if not _HEADER.exists():
        return f"{_HEADER} is missing (the valgrind package's headers)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler (gcc) to build the client-request helper"
    return None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        digest = hashlib.sha1(_SOURCE.encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"lightning_reg_callgrind_{digest}.so"
        if not path.exists():
            src = path.with_suffix(".c")
            src.write_text(_SOURCE)
            tmp = path.with_suffix(f".{os.getpid()}.so")
            subprocess.run(
                [shutil.which("gcc") or "cc", "-O1", "-shared", "-fPIC", "-o", str(tmp), str(src)],
                check=True,
                capture_output=True,
            )
            tmp.replace(path)
        _lib = ctypes.CDLL(str(path))
    return _lib


def running_on_valgrind() -> bool:
    return available() is None and bool(_library().cg_running())


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Instrument the code from here on (regions are counted only inside this)."""
    lib = _library()
    lib.cg_instrument(1)
    try:
        yield
    finally:
        lib.cg_instrument(0)


def begin() -> None:
    _library().cg_begin()


def end(name: str) -> None:
    _library().cg_end(name.encode())


@contextlib.contextmanager
def region(name: str) -> Iterator[None]:
    """Count the instructions of the block under ``name`` (one dump)."""
    begin()
    try:
        yield
    finally:
        end(name)


def valgrind_command(out_dir: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--collect-atstart=no",
        f"--callgrind-out-file={out_dir}/cg.%p",
    ]


def read_counts(out_dir: Path) -> dict[str, list[int]]:
    """``{region name: [instructions, ...]}`` from the dumps in ``out_dir``, in dump order."""
    counts: dict[str, list[int]] = {}
    files = sorted(out_dir.glob("cg.*.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    for path in files:
        text = path.read_text(errors="replace")
        name = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if name and total:
            counts.setdefault(name.group(1).strip(), []).append(int(total.group(1)))
    return counts
