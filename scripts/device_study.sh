#!/usr/bin/env bash
# A study on a lent accelerator machine (no Ray, MLflow or network there), from the parts scripts/device_pack.py
# made here (docs/gpu.md, "A study on a lent machine"). Run it in every call, each call carrying the next part
# (.xfer/partN): the parts gather in STAGE, which a warm machine keeps between calls. The call that completes
# the set runs the study with `seqbench sweep --offline` for at most SECONDS (default 480), resuming whatever
# earlier calls left, and writes $OUT/offline.tar.gz (every finished task's results) and $OUT/manifest.json
# (device and seconds per task). Here: unpack the tarball and `seqbench sweep STUDY --log-offline DIR/out`.
#   bash scripts/device_study.sh studies/paper-official.yaml [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STUDY=$(realpath "${1:?usage: scripts/device_study.sh STUDY [SECONDS]}")
LIMIT=${2:-480}
STAGE=${SEQBENCH_STAGE:-/tmp/seqbench-device}
OUT=${OUT:-$STAGE/returned}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
rc=0
"$PY" scripts/device_pack.py --unpack "$STAGE" --xfer "${SEQBENCH_XFER:-.xfer}" || rc=$?
[ "$rc" = 10 ] && exit 0  # more parts to come
[ "$rc" = 0 ] || exit "$rc"
# a copy without .git records the packed commit, so its trained-model identities are the ones planned here
git rev-parse HEAD >/dev/null 2>&1 || cp "$STAGE/COMMIT" seqbench/COMMIT
export PYTHONPATH="$STAGE/site${PYTHONPATH:+:$PYTHONPATH}" SEQBENCH_DATA_HOME="$STAGE/data" \
  SEQBENCH_CACHE="$STAGE/cache" PYTHONUNBUFFERED=1
# seqbench from this copy: the image has its dependencies except Ray and MLflow, which --offline does not use.
# Python runs outside the checkout, whose seqbench/ (without models/, installed as seqbench.models) would shadow it.
CHECK_IMPORTS="import seqbench.models, peft, scipy, pyarrow, pandas, typer, rich"
if ! (cd /tmp && "$PY" -c "$CHECK_IMPORTS" 2>/dev/null); then
  "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT"
fi
ACCELERATOR=${SEQBENCH_ACCELERATOR:-$(command -v nvidia-smi >/dev/null && echo gpu || echo cpu)}
rc=0
(cd /tmp && timeout "$LIMIT" "$PY" -m seqbench.cli sweep "$STUDY" --offline "$STAGE/out" \
  --accelerator "$ACCELERATOR" --checkpoint-minutes 2) || rc=$?
if [ -d "$STAGE/out" ]; then  # whatever finished, also when the sweep stopped or failed
  tar czf "$OUT/offline.tar.gz" -C "$STAGE" out
  cp "$STAGE/out/manifest.json" "$OUT/" 2>/dev/null || true
fi
if [ "$rc" = 124 ]; then
  echo "stopped after $LIMIT s; call again (the machine still warm) to resume"
  exit 0
fi
exit "$rc"
