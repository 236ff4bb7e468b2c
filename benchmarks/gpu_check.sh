#!/usr/bin/env bash
# The GPU check: tinyllm's training, distributed and decoding paths on one CUDA GPU, unattended.
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # results in OUT_DIR/gpu_check.json (default: $OUT)
#   benchmarks/gpu_check.sh --smoke          # the same stages on the CPU, tiny shapes (no GPU needed)
#
# For a bare GPU machine that cannot download anything: it needs only a python3 that holds a CUDA
# PyTorch, transformers, tiktoken, tokenizers, safetensors, onnx, onnxruntime, click, rich, pyyaml and
# pytest, and runs the project from this working tree (PYTHONPATH), installing nothing. Each stage
# has its own time limit and the JSON is rewritten after each one; the whole check is sized to
# finish in under 8 minutes on one H200 (see benchmarks/gpu_check.py for the stages).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TINYLLM_HOME="${TINYLLM_HOME:-$(mktemp -d)}"      # token caches; nothing of the user's
PY="${PYTHON:-python3}"
exec timeout 470 "$PY" benchmarks/gpu_check.py "$@"   # OUT_DIR (or $OUT) and options pass through
