#!/usr/bin/env bash
# Horovod on this host: NP worker processes, one device each.
#
#   launch/local.sh [--gloo|--mpi] [distsoftmax train flags...]
#
# environment:
#   NP                  processes (default: one per GPU from nvidia-smi -L, else 2)
#   HOROVOD_CONTROLLER  gloo or mpi (default: mpi where mpirun is installed): horovodrun --gloo / --mpi
#                       (a leading --gloo or --mpi argument wins over it)
#   OMP_NUM_THREADS     threads per process (default: 1)
#   HOROVODRUN_ARGS     more horovodrun options, split as a shell splits words (quote
#                       a value with spaces), e.g. "--timeline-filename /tmp/timeline.json --verbose"
#   PYTHON              the interpreter (default: the repo's .venv, else python on PATH)
# Every other argument goes to `python -m distsoftmax`.
set -euo pipefail

# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_repo_venv
python=${PYTHON:-python}

pick_controller local.sh "${1:-}"
shift "$SHIFT_ARGS"

default_np local.sh
default_omp_threads

split_words local.sh HOROVODRUN_ARGS
extra=("${words[@]}")
# with --mpi horovodrun adds Open MPI's --allow-run-as-root itself
exec horovodrun -np "$NP" -H "localhost:$NP" "--$controller" "${extra[@]}" \
    "$python" -m distsoftmax "$@"
