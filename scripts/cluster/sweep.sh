#!/usr/bin/env bash
# From the head node: run a grid on the cluster, every result logged to the shared MLflow server.
#   scripts/cluster/sweep.sh grid.yaml gpu     (or hpu)
set -euo pipefail
. "$(dirname "$0")/env.sh"
seqbench sweep "$1" --address auto --accelerator "${2:-gpu}" --tracking-uri "http://$HEAD:5000"
