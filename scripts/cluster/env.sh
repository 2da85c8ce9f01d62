# Sourced by the other scripts: paths every node sees at the same place (a shared filesystem).
export SHARED=${SHARED:-/shared/seqbench}
export SEQBENCH_DATA_HOME=${SEQBENCH_DATA_HOME:-$SHARED/data}   # prepared datasets (read by workers)
export SEQBENCH_CACHE=${SEQBENCH_CACHE:-$SHARED/cache}          # trained-model store, converted LLMs
export HEAD=${HEAD:-head}                                        # the head node's host name
