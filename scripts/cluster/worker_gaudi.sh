#!/usr/bin/env bash
# On each Intel Gaudi node: join the Ray cluster advertising the cards as Ray's resource HPU, which
# `seqbench sweep --accelerator hpu` asks for (one per LLM task). N_HPU defaults to the cards hl-smi lists.
set -euo pipefail
. "$(dirname "$0")/env.sh"
N_HPU=${N_HPU:-$(hl-smi -Q index -f csv,noheader 2>/dev/null | wc -l)}
ray start --address "$HEAD:6379" --num-cpus "$(nproc)" --resources "{\"HPU\": ${N_HPU:-8}}"
