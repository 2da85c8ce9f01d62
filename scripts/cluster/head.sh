#!/usr/bin/env bash
# On the head node: a shared MLflow server (the sweep driver is its only writer; everyone browses it) and
# the Ray head. Stop with: ray stop; kill "$(cat "$SHARED/mlflow.pid")"
set -euo pipefail
. "$(dirname "$0")/env.sh"
mkdir -p "$SHARED" "$SEQBENCH_DATA_HOME" "$SEQBENCH_CACHE"
nohup mlflow server --backend-store-uri "sqlite:///$SHARED/mlflow.db" \
  --artifacts-destination "$SHARED/mlartifacts" --host 0.0.0.0 --port 5000 > "$SHARED/mlflow.log" 2>&1 &
echo $! > "$SHARED/mlflow.pid"
ray start --head --port 6379 --dashboard-host 0.0.0.0 --num-cpus "$(nproc)"
echo "MLflow: http://$HEAD:5000   Ray: $HEAD:6379"
