#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU (< 8 minutes): the CUDA-marked tests, then the CUDA
# benchmark (sdk fp32/fp16 vs torch, 1024² and 2048² tiles) -> benchmarks/results/gpu.json.
# Fails loudly (exit 2) where there is no usable GPU, and fails if any CUDA test was skipped on one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fail() { echo "gpu_check: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 || fail "no nvidia-smi: this check needs an NVIDIA GPU and driver"
nvidia-smi -L || fail "nvidia-smi lists no GPU"
python3 - <<'PY' || fail "ONNX Runtime cannot run on CUDA here (install unet-sdk[gpu]: onnxruntime-gpu with CUDA 12 and cuDNN 9)"
import sys
from sdk.runtime import Runtime
from sdk.models import default_model_path
runtime = Runtime(default_model_path(), device="cuda")
print("onnxruntime providers:", runtime.providers)
sys.exit(0 if runtime.device == "cuda" else 1)
PY

results=benchmarks/results
mkdir -p "$results"
junit=$(mktemp --suffix=.xml)
# every CUDA test must run here: a skip on a GPU machine is a failure of this check
timeout 240 python3 -m pytest -m cuda -q -rs -p no:cacheprovider --junitxml="$junit" tests/
python3 - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
suites = ET.parse(sys.argv[1]).getroot()
suite = suites if suites.tag == "testsuite" else suites[0]
tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
print(f"gpu_check: {tests} CUDA tests, {skipped} skipped")
sys.exit(1 if tests == 0 or skipped else 0)
PY
timeout 240 python3 benchmarks/bench_gpu.py --out "$results/gpu.json" --seconds 8
echo "gpu_check: done, figures in $results/gpu.json"
