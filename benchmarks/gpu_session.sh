#!/usr/bin/env bash
# Everything a session with a GPU runs (issue 18), in one go, with its output in one folder:
#   OUT=gpu_results bash benchmarks/gpu_session.sh        # about 8 minutes on an H200; rerun safe
# 1. what the machine is (nvidia-smi, torch/CUDA/Lightning versions);
# 2. the GPU tests (python -m pytest -m gpu), 4 minutes at most;
# 3. the benchmarks on cuda (callbacks vs bare, resident vs hand-written loop, augmentation throughput, the
#    CIFAR-10 CNN epoch), 5 minutes at most, JSON next to their console output.
# It needs the package importable (pip install -e ".[dev]" where the machine can install, or a carried venv).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
DATA=${DATA:-../shared/data}
(nvidia-smi || true) > "$OUT/nvidia-smi.txt" 2>&1
python - > "$OUT/versions.txt" 2>&1 <<'PY'
import lightning, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "lightning", lightning.__version__)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")
PY
cat "$OUT/versions.txt"
timeout 240 python -m pytest -m gpu -q -rA -p no:cacheprovider > "$OUT/gpu_tests.txt" 2>&1
echo "gpu tests: exit $? ($(tail -1 "$OUT/gpu_tests.txt"))"
timeout 300 python -m benchmarks --device cuda --data-dir "$DATA" --out-dir "$OUT" \
    --only callback_overhead floor augment_throughput cifar_cnn > "$OUT/benchmarks.txt" 2>&1
echo "benchmarks: exit $?"
tail -8 "$OUT/benchmarks.txt"
