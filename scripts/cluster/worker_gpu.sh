#!/usr/bin/env bash
# On each GPU node: join the Ray cluster; Ray detects the GPUs (num_gpus) itself.
set -euo pipefail
. "$(dirname "$0")/env.sh"
ray start --address "$HEAD:6379" --num-cpus "$(nproc)"
