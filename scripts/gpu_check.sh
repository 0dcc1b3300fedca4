#!/usr/bin/env bash
# Issue 14, item 4: every check that needs a GPU, in one short slot (expected ~5 minutes on one H100;
# the step limits add up to 10 minutes).
#
#   scripts/gpu_check.sh                # results under $OUT (default: ./gpu-check), summary on stdout
#   PYTHON=/path/to/python OUT=/tmp/gpu scripts/gpu_check.sh
#
# Needs a CUDA build of torch 2.13 and this project importable (pip install -e .); stops with exit 2
# when torch sees no GPU.  Each step has its own time limit; a failed step does not stop the next.
# Steps: the device (card, driver, CUDA, cuDNN); tests/engines/test_gpu.py (sync guard on CUDA with
# torch's sync debug mode, the non-finite-loss rule on the device, bf16 vs fp32 epoch metrics, fp16
# scaler checkpoints, determinism, DDP over NCCL on one GPU, the prefetch); the CPU-emulated sync
# guard; benchmarks/gpu_engine.py (Engine vs a hand-written loop, ResNet-18, 32x32 random images,
# images/s) with bf16, bf16 + fused SGD, fp16 and fp32.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
: > "$OUT/summary.txt"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME SECONDS CMD...: run CMD with a time limit, its output to $OUT/NAME.txt
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    say "$(printf '%-22s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "$(tail -n 1 "$OUT/$name.txt")")"
}

"$PY" - > "$OUT/device.txt" 2>&1 <<'PYEOF'
import subprocess, torch
if not torch.cuda.is_available():
    raise SystemExit(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) sees no GPU")
p = torch.cuda.get_device_properties(0)
try:
    driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.TimeoutExpired):
    driver = "? (no nvidia-smi)"
print(f"card: {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}, "
      f"{torch.cuda.device_count()} GPU(s)")
print(f"driver {driver}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
PYEOF
rc=$?
cat "$OUT/device.txt" | tee -a "$OUT/summary.txt"
[ $rc -eq 0 ] || exit 2

step test_gpu 180 "$PY" -m pytest -q -rs -p no:cacheprovider tests/engines/test_gpu.py
step sync_guard_emulated 60 "$PY" -m pytest -q -p no:cacheprovider tests/engines/test_sync_guard.py -k "not ddp"
B=(benchmarks/gpu_engine.py --pairs 3 --epochs 2 --items 15000 --batch 256 --workers 4)
step bench_bf16 90 "$PY" "${B[@]}" --amp bf16 --json "$OUT/bench_bf16.json"
step bench_bf16_fused 90 "$PY" "${B[@]}" --amp bf16 --fused --json "$OUT/bench_bf16_fused.json"
step bench_fp16 90 "$PY" "${B[@]}" --amp fp16 --json "$OUT/bench_fp16.json"
step bench_fp32 90 "$PY" "${B[@]}" --amp none --json "$OUT/bench_fp32.json"
say "results: $OUT"
