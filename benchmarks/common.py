"""Shared pieces of the benchmarks: options, machine description, data, timing statistics, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# ``../shared/data`` relative to the repository (the workspace's data folder), unless LIGHTNING_REG_DATA is set.
DEFAULT_DATA_DIR = Path(os.environ.get("LIGHTNING_REG_DATA", REPO.parent / "shared" / "data"))
DEFAULT_OUT_DIR = REPO / "benchmarks" / "results"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark takes: ``--quick``, ``--device``, ``--threads``, ``--data-dir``, output paths."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: a few steps, seconds not minutes")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:0, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: least noisy)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"root holding MNIST/raw (torchvision layout); default {DEFAULT_DATA_DIR}; generated "
        "MNIST-shaped data is used when it is absent",
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where <name>.json goes")
    parser.add_argument("--json-out", type=Path, default=None, help="JSON path (overrides --out-dir)")
    return parser


def quiet_lightning() -> None:
    """Silence Lightning's info lines and warnings (tips about workers, logging intervals): they are not results."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_reg"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", module="lightning_reg")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What the figures came from: CPU, core count, load average, library versions, torch threads, GPU name."""
    import lightning
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "load_avg": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def describe(info: dict[str, Any]) -> str:
    gpu = f", gpu {info['gpu']}" if "gpu" in info else ""
    return (
        f"{info['cpu']} x{info['nproc']}, load {info['load_avg']}, python {info['python']}, torch {info['torch']}, "
        f"lightning {info['lightning']}, threads {info['torch_threads']}, device {info['device']}{gpu}"
    )


def write_idx(path: Path, array: Any) -> None:
    """Write a uint8 array in MNIST's IDX format (what torchvision's MNIST class reads)."""
    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    path.write_bytes(struct.pack(">HBB", 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())


def mnist_root(data_dir: Path, n_train: int = 7000, n_test: int = 3000) -> tuple[Path, str]:
    """The MNIST root to use and where it came from.

    ``data_dir`` when it holds ``MNIST/raw``; otherwise generated MNIST-shaped IDX files (blurred class
    templates plus noise, so the model has something to learn) in a temporary folder, read through the same
    DataModule code path.
    """
    if all((data_dir / "MNIST" / "raw" / f).exists() for f in MNIST_FILES):
        return data_dir, f"MNIST files under {data_dir}"
    import numpy as np

    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 255, (10, 28, 28))
    root = Path(tempfile.mkdtemp(prefix="lightning_reg_bench_"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] * 0.6 + rng.normal(0, 60, (n, 28, 28)), 0, 255)
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return root, f"generated MNIST-shaped data ({n_train} train images; {data_dir}/MNIST/raw not found)"


def run_interleaved(
    forms: Sequence[str], run: Callable[[str], dict[str, float]], repeats: int, key: str = "epoch_s"
) -> dict[str, dict[str, list[float]]]:
    """One untimed warm-up run per form, then ``repeats`` rounds that run every form once, in a rotated order.

    Returns, per form, every figure ``run(form)`` reported as a list over the rounds, and prints each round's
    ``key``. Rotating the order spreads slow drifts of a shared machine over all forms.
    """
    for form in forms:
        run(form)
    out: dict[str, dict[str, list[float]]] = {f: {} for f in forms}
    for r in range(repeats):
        order = list(forms[r % len(forms) :]) + list(forms[: r % len(forms)])
        this = {form: run(form) for form in order}
        for form in forms:
            for name, value in this[form].items():
                out[form].setdefault(name, []).append(value)
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{f} {this[f][key]:.3f} s" for f in forms), flush=True)
    return out


def time_ops(
    ops: dict[str, Callable[[], Any]], warmup: int, calls: int, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Each op alone in a hot loop: the median seconds per call over ``calls`` calls after ``warmup`` untimed ones
    (``sync`` after each timed call, e.g. ``torch.cuda.synchronize``)."""
    out = {}
    for name, op in ops.items():
        for _ in range(warmup):
            op()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            op()
            if sync is not None:
                sync()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def paired_summary(
    per_repeat: dict[str, list[float]], fastest: dict[str, float] | None, baseline: str
) -> dict[str, dict]:
    """Per case: median of the per-repeat medians, the median of per-repeat ratios to ``baseline`` (pairing
    cancels slow drifts of the machine), and the fastest observation over the fastest baseline one
    (contention only ever adds time, so the fastest steps are the least disturbed). ``fastest`` defaults to
    each case's fastest repeat."""
    if fastest is None:
        fastest = {case: min(values) for case, values in per_repeat.items()}
    out = {}
    base = per_repeat[baseline]
    for case, values in per_repeat.items():
        out[case] = {
            "median_s": statistics.median(values),
            "fastest_s": fastest[case],
            "ratio_median": statistics.median(v / b for v, b in zip(values, base)),
            "ratio_fastest": fastest[case] / fastest[baseline],
            "per_repeat_s": values,
        }
    return out


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A markdown table (pastes straight into docs/performance.md)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def json_path(args: argparse.Namespace, name: str) -> Path:
    path = args.json_out if args.json_out is not None else args.out_dir / f"{name}{'_quick' if args.quick else ''}.json"
    return Path(path)


def write_json(args: argparse.Namespace, name: str, payload: dict[str, Any]) -> Path:
    path = json_path(args, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.executable).name, "-m", f"benchmarks.{name}", *sys.argv[1:]]),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"JSON: {path}")
    return path


def read_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM); -1 where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
